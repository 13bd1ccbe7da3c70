//! `User`: a person or program that logs in to the Watcher API.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::common::{CommonStatus, SecretKeyRef};

/// A Watcher user. The password comes from a Secret; Panoptes keeps only a salted slow hash.
#[skip_serializing_none]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "panoptes.dev",
    doc = "A User is a Watcher login for the admin API facade (and the Watcher UI): its login, access level and organization memberships. The password comes from a referenced Secret; Panoptes keeps only a salted argon2id hash.",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    shortname = "vmsuser",
    category = "panoptes",
    printcolumn = r#"{"name":"ID","type":"integer","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Login","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.accessLevel"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.id) || (has(self.id) && self.id == oldSelf.id)", "message": "spec.id is immutable once pinned"},
    {"rule": "!self.name.contains(':')", "message": "spec.name (the login) must not contain ':' (Basic credentials split there, so it could never log in)"},
    {"rule": "!self.name.matches('[\\x00-\\x1f\\x7f]')", "message": "spec.name (the login) must not contain control characters"},
    {"rule": "!has(self.fullname) || !self.fullname.matches('[\\x00-\\x1f\\x7f]')", "message": "spec.fullname must not contain control characters"},
    {"rule": "!has(self.phone) || !self.phone.matches('[\\x00-\\x1f\\x7f]')", "message": "spec.phone must not contain control characters"},
    {"rule": "!has(self.note) || !self.note.matches('[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]')", "message": "spec.note must not contain control characters other than line breaks and tabs"}
]))]
pub struct UserSpec {
    /// Pinned Watcher id (positive integer). Leave unset to have Panoptes assign one.
    #[schemars(range(min = 1, max = 2147483647))]
    pub id: Option<i64>,
    /// Login name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Full (display) name.
    #[schemars(length(max = 1024))]
    pub fullname: Option<String>,
    /// E-mail address (needed for password recovery).
    #[schemars(length(max = 320))]
    pub email: Option<String>,
    /// Phone number.
    #[schemars(length(max = 64))]
    pub phone: Option<String>,
    /// UI language, ISO 639-1 code.
    #[schemars(regex(pattern = "^[a-z]{2}$"))]
    pub locale: Option<String>,
    /// Free-text note about the user.
    #[schemars(length(max = 4096))]
    pub note: Option<String>,
    /// Maximum number of simultaneous sessions (0 = unlimited).
    #[schemars(range(min = 0))]
    pub max_sessions: Option<i64>,
    /// A disabled user cannot log in.
    pub disabled: Option<bool>,
    /// The user may not modify their own profile.
    pub readonly: Option<bool>,
    /// generic (client UI, explicitly granted cameras only) or admin (everything).
    pub access_level: Option<AccessLevel>,
    /// Secret key holding the user's password.
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Set by the Watcher API (never in a manifest): the facade-owned Secret key holding a
    /// password changed through the API. When set, it wins over `passwordSecretRef`, so
    /// re-applying a GitOps manifest (which never sets this field) keeps the changed password;
    /// remove this field to go back to `passwordSecretRef`. The Secret is created by Panoptes,
    /// owned by this User and deleted with it.
    pub facade_password_secret_ref: Option<SecretKeyRef>,
    /// Organizations the user belongs to, with permissions.
    pub organizations: Option<Vec<Membership>>,
}

/// Access level of a user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// Client UI, only explicitly granted cameras.
    #[default]
    Generic,
    /// Full rights, admin API included.
    Admin,
}

/// Membership of a user in an organization.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// Name of the Organization (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub organization_ref: String,
    /// What the user may do there.
    pub permissions: Option<Permissions>,
}

/// Per-organization permissions (Watcher wire names).
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Permissions {
    /// Member of the organization.
    pub is_member: Option<bool>,
    /// May view organization statistics.
    pub can_view_stats: Option<bool>,
    /// May view streams.
    pub can_view_streams: Option<bool>,
    /// May manage streams.
    pub can_edit_streams: Option<bool>,
    /// May manage users.
    pub can_edit_users: Option<bool>,
    /// May view person lists.
    pub can_view_persons_lists: Option<bool>,
    /// May edit person lists.
    pub can_edit_persons_lists: Option<bool>,
}

/// Observed state of a user.
#[skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// Conditions and the observed generation.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Watcher id in effect (pinned or assigned).
    pub id: Option<i64>,
    /// Name of the operator-owned Secret holding the password hash.
    pub password_hash_secret: Option<String>,
    /// Token generation: moves on when the password changes or is removed; the facade refuses
    /// tokens issued for an earlier generation (a counter, nothing derived from the password).
    pub password_generation: Option<i64>,
}

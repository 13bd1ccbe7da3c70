//! Which users an admin may delete. Deleting yourself would end your own session mid-call,
//! and deleting the last enabled admin would leave an installation nobody can administer
//! through the API (only `kubectl` could repair it): both are refused, as a conflict with the
//! current state rather than a bad request.

use crate::resources::UserSpec;
use crate::resources::user::AccessLevel;

/// Why a user may not be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller is the user.
    Yourself,
    /// No other enabled admin would remain.
    LastAdmin,
}

impl Refusal {
    /// The stable error code of the refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::Yourself => "cannot_delete_yourself",
            Self::LastAdmin => "last_admin",
        }
    }

    /// What to tell the caller.
    pub fn message(self) -> &'static str {
        match self {
            Self::Yourself => "you cannot delete your own user; ask another admin",
            Self::LastAdmin => {
                "this is the last enabled admin: make another user an admin before deleting it"
            }
        }
    }
}

/// Whether a user can administer the installation: an admin that is not disabled.
pub fn is_enabled_admin(spec: &UserSpec) -> bool {
    spec.access_level == Some(AccessLevel::Admin) && !spec.disabled.unwrap_or(false)
}

/// Whether the caller (`caller_uid`) may delete the user `target_uid`, given whether the
/// target is an enabled admin and how many enabled admins there are in all (target included).
pub fn may_delete(
    target_uid: &str,
    caller_uid: &str,
    target_is_admin: bool,
    enabled_admins: usize,
) -> Result<(), Refusal> {
    if target_uid == caller_uid {
        return Err(Refusal::Yourself);
    }
    if target_is_admin && enabled_admins <= 1 {
        return Err(Refusal::LastAdmin);
    }
    Ok(())
}

/// Annotation `panoptes import` puts on every User it writes: the source cannot export
/// passwords, so the user must get a new one before logging in.
pub const PASSWORD_RESET_ANNOTATION: &str = "panoptes.dev/password-reset-required";
/// Condition type of a User that must get a password before it may log in.
pub const PASSWORD_RESET_REQUIRED: &str = "PasswordResetRequired";

/// Whether a User must get a password before logging in: it was imported (annotated) and
/// no password has been set since (none in effect, or its Secret is not hashed yet). Once a
/// password is set the requirement is met for good, even if that password is removed later
/// (a User without a password cannot log in anyway).
pub fn password_reset_required(annotated: bool, password_set: bool) -> Option<bool> {
    annotated.then_some(!password_set)
}

/// Whether the User's status says it may not log in until a password is set: what the
/// login path checks, so a stale hash (or a status written by hand) never lets an imported
/// user in before the reset.
pub fn blocks_login(conditions: &[crate::resources::common::Condition]) -> bool {
    crate::resources::common::condition(conditions, PASSWORD_RESET_REQUIRED)
        .is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yourself_and_the_last_admin_are_refused() {
        for (target, caller, admin, admins, want) in [
            ("a", "a", true, 5, Err(Refusal::Yourself)),
            ("a", "a", false, 1, Err(Refusal::Yourself)),
            ("a", "b", true, 1, Err(Refusal::LastAdmin)),
            ("a", "b", true, 2, Ok(())),
            ("a", "b", false, 1, Ok(())),
            ("a", "b", false, 0, Ok(())),
        ] {
            assert_eq!(may_delete(target, caller, admin, admins), want);
        }
    }

    #[test]
    fn only_imported_users_without_a_password_must_reset() {
        assert_eq!(password_reset_required(false, false), None);
        assert_eq!(password_reset_required(false, true), None);
        assert_eq!(password_reset_required(true, false), Some(true));
        assert_eq!(password_reset_required(true, true), Some(false));
    }

    #[test]
    fn a_true_reset_condition_blocks_login() {
        use crate::resources::common::Condition;
        let c = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "ImportedWithoutPassword".into(),
            message: String::new().into(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        assert!(blocks_login(&[
            c("Ready", "True"),
            c(PASSWORD_RESET_REQUIRED, "True")
        ]));
        assert!(!blocks_login(&[c(PASSWORD_RESET_REQUIRED, "False")]));
        assert!(!blocks_login(&[c("Ready", "True")]));
    }
}

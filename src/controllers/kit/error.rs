//! The one error type of the reconcilers, with a bounded category for metrics and logs.

/// Errors of every reconciler (and of the id claims they make).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{action} {what}: {source}")]
    Kube {
        /// What was attempted (`applying status of`, `creating id claim`, …).
        action: &'static str,
        /// The object concerned (`Preset ns/name`, `Lease ns/name`).
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Hashing or verifying a password failed for a reason other than a wrong password.
    #[error("password hashing for User {user} failed: {reason}")]
    Hash {
        /// `namespace/name` of the User.
        user: String,
        /// The hasher's error (never contains the password).
        reason: String,
    },
    /// No free id was found (the id space or the retry budget is exhausted).
    #[error("no free {kind} id found after {tries} candidates")]
    IdsExhausted {
        /// Kind of the ids.
        kind: &'static str,
        /// Candidates tried.
        tries: u32,
    },
}

impl Error {
    /// Wraps a kube error with what was attempted on which object.
    pub fn kube(action: &'static str, what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Error::Kube {
            action,
            what,
            source,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_conflict() => "conflict",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_invalid() || s.code == 400 => "invalid",
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.is_forbidden() => "forbidden",
            Error::Kube { .. } => "kube",
            Error::Hash { .. } => "hash",
            Error::IdsExhausted { .. } => "ids_exhausted",
        }
    }

    /// True when retrying without a change to the object cannot help (the API server rejected
    /// what we wrote as invalid): such errors wait for the next change instead of backing off.
    pub(crate) fn is_invalid_input(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(s), .. } if s.is_invalid() || s.code == 400)
    }
}

/// True for a 404 from the API server.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

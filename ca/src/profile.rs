//! Certificate profiles: what kind of subject a certificate is for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The certificate profile decides the default lifetime and extra SANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A service (default 1 h).
    Workload,
    /// A person through the desktop agent (default 12 h, rfc822Name SAN).
    User,
    /// The CA's own API server certificate.
    Server,
}

impl Profile {
    /// The name used in the database, CLI and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workload => "workload",
            Self::User => "user",
            Self::Server => "server",
        }
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "workload" => Ok(Self::Workload),
            "user" => Ok(Self::User),
            "server" => Ok(Self::Server),
            _ => Err(Error::bad(
                "bad_profile",
                format!("profile `{s}` must be `workload` or `user`"),
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

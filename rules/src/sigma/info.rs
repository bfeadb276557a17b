//! What vigil keeps of a Sigma rule beside its detection (shown by `vigil rules list` and on
//! the rule's source).

use std::path::PathBuf;

/// What vigil keeps of a Sigma rule beside its detection.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SigmaInfo {
    /// The file it came from, as found under the configured path.
    pub file: PathBuf,
    pub sigma_id: Option<String>,
    pub level: Option<String>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub falsepositives: Vec<String>,
    pub references: Vec<String>,
    pub author: Option<String>,
}

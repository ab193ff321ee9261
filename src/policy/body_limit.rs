//! Request body size limits: `limits.max_body_bytes` and `[[body_limit]]`
//! rules. A declared Content-Length over the limit is refused before the
//! upstream is contacted; a streamed body is counted as it is forwarded
//! (`crate::request_body`).

use super::prefixes::{FoldedPath, PathPrefixes};
use crate::config::BodyLimitRule;

#[derive(Debug, Clone, Default)]
pub struct BodyLimits {
    rules: Vec<(PathPrefixes, u64)>,
    default: Option<u64>,
}

impl BodyLimits {
    pub fn new(rules: &[BodyLimitRule], default: Option<u64>) -> Self {
        Self {
            rules: rules
                .iter()
                .map(|r| (PathPrefixes::new(&r.paths), r.max_bytes))
                .collect(),
            default,
        }
    }

    /// The limit for a request to `canonical`: the first `[[body_limit]]`
    /// rule whose paths match, else `limits.max_body_bytes`; `None`: no
    /// limit.
    pub fn limit_for(&self, path: &FoldedPath<'_>) -> Option<u64> {
        self.rules
            .iter()
            .find(|(paths, _)| paths.matches_folded(path))
            .map(|(_, max)| *max)
            .or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_rule_sets_the_limit_else_the_default() {
        let limits = BodyLimits::new(
            &[
                BodyLimitRule {
                    paths: vec!["/arcgis/rest/services/Uploads".into()],
                    max_bytes: 2_000_000_000,
                },
                BodyLimitRule {
                    paths: vec!["/arcgis".into()],
                    max_bytes: 1000,
                },
            ],
            Some(10),
        );
        assert_eq!(
            limits.limit_for(&FoldedPath::new("/arcgis/rest/services/uploads/upload")),
            Some(2_000_000_000)
        );
        assert_eq!(
            limits.limit_for(&FoldedPath::new("/arcgis/rest")),
            Some(1000)
        );
        assert_eq!(limits.limit_for(&FoldedPath::new("/other")), Some(10));
        assert_eq!(
            BodyLimits::new(&[], None).limit_for(&FoldedPath::new("/x")),
            None
        );
    }
}

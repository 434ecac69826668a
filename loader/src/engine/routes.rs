//! The command routing table: every command pattern of every plugin, matched
//! in one pass with a `RegexSet`.
//!
//! Public so that it can be benchmarked and reused; the engine builds one
//! from the loaded plugins' manifests.

use regex::{CaptureLocations, Regex, RegexSet, RegexSetBuilder};

pub use crate::library::compile_pattern;

/// One command of one plugin.
pub struct Route {
    /// Index of the plugin, in load order.
    pub plugin: usize,
    /// Index of the command in the plugin's manifest.
    pub command: u32,
    /// The anchored pattern.
    pub regex: Regex,
}

/// All routes, in plugin-load order then manifest order: the order in which
/// a command text's matches run and their replies are delivered.
pub struct Routes {
    set: RegexSet,
    /// The routes, in matching order.
    pub routes: Vec<Route>,
}

impl Routes {
    /// Builds the table; `plugins` gives each plugin's compiled patterns.
    /// The patterns were validated at load time, so compiling the set only
    /// fails if the *combined* set exceeds regex's size limit.
    pub fn new<'a>(plugins: impl IntoIterator<Item = &'a [Regex]>) -> Result<Self, regex::Error> {
        let mut routes = Vec::new();
        for (plugin, patterns) in plugins.into_iter().enumerate() {
            for (command, regex) in patterns.iter().enumerate() {
                routes.push(Route {
                    plugin,
                    // Manifests are far smaller than 2^32 commands.
                    command: command as u32,
                    regex: regex.clone(),
                });
            }
        }
        // The individual regexes were compiled anchored (`^(?:...)`), so
        // their source is exactly what the set must match.
        // Hundreds of patterns overflow the lazy DFA's default cache, and the
        // set then falls back to a much slower engine; give it room.
        let set = RegexSetBuilder::new(routes.iter().map(|r| r.regex.as_str()))
            .dfa_size_limit(64 << 20)
            .build()?;
        Ok(Routes { set, routes })
    }

    /// Which routes match `text`, into a caller-owned buffer (one `bool` per
    /// route, in route order; allocated once and reused by each worker).
    pub fn matching_into(&self, text: &str, matched: &mut Vec<bool>) {
        matched.clear();
        matched.resize(self.routes.len(), false);
        self.set.matches_read_at(matched, text, 0);
    }

    /// Fresh capture buffers, one per route (a worker keeps its own).
    pub fn capture_buffers(&self) -> Vec<CaptureLocations> {
        self.routes
            .iter()
            .map(|r| r.regex.capture_locations())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Property tests (the fuzz target for the command router): the
    //! one-pass `RegexSet` routing agrees with matching every pattern in
    //! turn, for arbitrary pattern sets and command texts.
    use super::*;
    use crate::library::compile_pattern;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    const FRAGMENTS: [&str; 10] = [
        "bacon",
        r"bacon$",
        r"bacon\s+(\S+)",
        "b",
        r"\d+",
        "(a|b)+c",
        "x?y",
        ".*",
        r"quote(?:\s+(\d+))?$",
        "é",
    ];

    proptest! {
        // Deterministic unless `PROPTEST_RNG_SEED` is set: see line.rs's fuzz module.
        #![proptest_config(ProptestConfig {
            rng_seed: RngSeed::Fixed(0x9e37_79b9_7f4a_7c15),
            ..ProptestConfig::default()
        })]

        #[test]
        fn one_pass_routing_equals_a_loop_over_patterns(
            plugins in proptest::collection::vec(proptest::collection::vec(0..FRAGMENTS.len(), 0..5), 0..6),
            text in "[a-z0-9 é]{0,16}",
        ) {
            let compiled: Vec<Vec<Regex>> = plugins
                .iter()
                .map(|p| p.iter().map(|&i| compile_pattern(FRAGMENTS[i]).unwrap()).collect())
                .collect();
            let routes = Routes::new(compiled.iter().map(Vec::as_slice)).unwrap();
            let mut matched = Vec::new();
            routes.matching_into(&text, &mut matched);
            let fast: Vec<usize> = (0..matched.len()).filter(|&i| matched[i]).collect();
            let slow: Vec<usize> = routes
                .routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.regex.is_match(&text))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(fast, slow);
        }
    }
}

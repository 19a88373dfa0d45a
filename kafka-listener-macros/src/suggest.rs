//! "Did you mean" hints for misspelt keys and values.

/// The candidate `input` most likely meant, if any is close enough.
///
/// Spelling variants (`RECORD`, `manual-immediate`, `ackMode`) normalise to the candidate
/// exactly; otherwise the nearest candidate by edit distance wins if it is within a third of
/// the input's length (at least 2 edits), which catches typos without guessing wildly.
pub(crate) fn did_you_mean<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let normalized = normalize(input);
    if let Some(exact) = candidates.iter().find(|c| **c == normalized) {
        return Some(exact);
    }
    let budget = (normalized.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (levenshtein(&normalized, c), *c))
        .filter(|(distance, _)| *distance <= budget)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `ackMode`, `ACK-MODE`, `Ack Mode` → `ack_mode`.
pub(crate) fn normalize(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 4);
    let mut previous_lower = false;
    for ch in input.chars() {
        match ch {
            '-' | ' ' | '_' => {
                out.push('_');
                previous_lower = false;
            }
            c if c.is_uppercase() => {
                if previous_lower {
                    out.push('_');
                }
                out.extend(c.to_lowercase());
                previous_lower = false;
            }
            c => {
                out.push(c);
                previous_lower = c.is_lowercase() || c.is_ascii_digit();
            }
        }
    }
    out
}

/// Edit distance (insertions, deletions, substitutions), by the two-row method.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACK_MODES: &[&str] = &["record", "batch", "manual", "manual_immediate"];

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("record", "record"), 0);
        assert_eq!(levenshtein("recrod", "record"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn spelling_variants_normalise_to_the_candidate() {
        assert_eq!(did_you_mean("RECORD", ACK_MODES), Some("record"));
        assert_eq!(
            did_you_mean("manual-immediate", ACK_MODES),
            Some("manual_immediate")
        );
        assert_eq!(
            did_you_mean("manualImmediate", ACK_MODES),
            Some("manual_immediate")
        );
        assert_eq!(normalize("clientIdPrefix"), "client_id_prefix");
    }

    #[test]
    fn typos_within_budget_are_suggested_and_others_are_not() {
        assert_eq!(did_you_mean("recrod", ACK_MODES), Some("record"));
        assert_eq!(did_you_mean("manul", ACK_MODES), Some("manual"));
        assert_eq!(did_you_mean("whatever", ACK_MODES), None);
    }
}

//! Text for messages: user input echoed back is shortened, so that a megabyte pasted into a
//! selection or a partition key does not come back whole in the error.

/// How many characters of a user's input a message shows at most.
pub const SHOWN_CHARS: usize = 80;

/// `input` as a message shows it: whole when it has at most `max` characters, else its first
/// `max` characters, an ellipsis and how many more there were. Cuts on a character boundary.
pub fn shorten(input: &str, max: usize) -> String {
    match input.char_indices().nth(max) {
        None => input.to_owned(),
        Some((cut, _)) => {
            let total = max + input[cut..].chars().count();
            format!("{}… ({total} characters)", &input[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_inputs_are_cut_on_a_character() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc… (4 characters)");
        assert_eq!(shorten("ééééé", 2), "éé… (5 characters)");
        assert_eq!(
            shorten(&"x".repeat(100_000), 5),
            "xxxxx… (100000 characters)"
        );
    }
}

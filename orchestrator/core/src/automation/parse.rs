//! The text form of a [`Condition`], as `orch.toml` declares it:
//!
//! ```text
//! expr    := or
//! or      := and ("|" and)*
//! and     := unary ("&" unary)*
//! unary   := "!" unary | postfix
//! postfix := primary ("." name "(" args? ")")*     .since(x)  .since_last_handled()  .newly_true()
//! primary := "(" expr ")" | name ("(" args? ")")?
//! args    := arg ("," arg)*          arg := 'string' | "string" | number | expr
//! ```
//!
//! Names: the operands (`missing`, `newly_updated`, `newly_requested`, `in_progress`,
//! `execution_failed`, `code_version_changed`, `in_latest_partition`, `any_deps_updated`,
//! `any_deps_missing`, `any_deps_in_progress`, `all_deps_blocking_checks_passed`,
//! `updated_within(SECONDS)`, `cron_tick_passed(CRON, TZ)`,
//! `all_deps_updated_since_cron(CRON, TZ)`), the combinators (`since(A, B)`, `newly_true(A)`)
//! and the policies (`eager`, `on_missing`, `on_cron(CRON[, TZ])`, the timezone UTC by
//! default).

use std::fmt;
use std::time::Duration;

use super::Condition;

/// A condition that does not parse: what was expected, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub input: String,
    /// Byte offset of the problem in `input`.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.input.chars().take(200).collect();
        write!(
            f,
            "invalid automation condition `{shown}`: {} (at character {})",
            self.message,
            self.input[..self.position.min(self.input.len())]
                .chars()
                .count()
                + 1
        )
    }
}

impl std::error::Error for ParseError {}

const OPERANDS: &[&str] = &[
    "missing",
    "newly_updated",
    "newly_requested",
    "in_progress",
    "execution_failed",
    "code_version_changed",
    "in_latest_partition",
    "any_deps_updated",
    "any_deps_missing",
    "any_deps_in_progress",
    "all_deps_blocking_checks_passed",
    "eager",
    "on_missing",
];
const FUNCTIONS: &[&str] = &[
    "updated_within",
    "cron_tick_passed",
    "all_deps_updated_since_cron",
    "on_cron",
    "since",
    "newly_true",
];
const METHODS: &[&str] = &["since", "since_last_handled", "newly_true"];

impl std::str::FromStr for Condition {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Condition, ParseError> {
        Condition::parse(s)
    }
}

impl Condition {
    /// Parses the text form (see the [module documentation](self)).
    pub fn parse(input: &str) -> Result<Condition, ParseError> {
        if input.len() > 10_000 {
            return Err(ParseError {
                input: input.to_owned(),
                position: 10_000,
                message: "longer than 10,000 characters".to_owned(),
            });
        }
        let mut p = Parser {
            input,
            pos: 0,
            depth: 0,
        };
        let c = p.expr()?;
        p.skip_ws();
        if p.pos < input.len() {
            return Err(p.error("expected `&`, `|` or the end"));
        }
        Ok(c)
    }
}

enum Arg {
    Text(String),
    Number(u64),
    Cond(Condition),
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_owned(),
            position: self.pos,
            message: message.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{c}`")))
        }
    }

    fn name(&mut self) -> Option<&str> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 || self.rest().starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let start = self.pos;
        self.pos += len;
        Some(&self.input[start..self.pos])
    }

    fn expr(&mut self) -> Result<Condition, ParseError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(self.error("nested more than 64 levels deep"));
        }
        let mut terms = vec![self.and()?];
        while self.eat('|') {
            terms.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Condition::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.eat('&') {
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Condition::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Condition, ParseError> {
        if self.eat('!') {
            self.depth += 1;
            if self.depth > 64 {
                return Err(self.error("nested more than 64 levels deep"));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(!inner);
        }
        let mut c = self.primary()?;
        while self.eat('.') {
            let at = self.pos;
            let Some(method) = self.name().map(str::to_owned) else {
                return Err(self.error("expected a method name after `.`"));
            };
            let args = self.args()?.unwrap_or_default();
            c = match (method.as_str(), args.as_slice()) {
                ("since", [Arg::Cond(reset)]) => c.since(reset.clone()),
                ("since_last_handled", []) => c.since_last_handled(),
                ("newly_true", []) => c.newly_true(),
                (m, _) if METHODS.contains(&m) => {
                    self.pos = at;
                    return Err(self.error(format!(
                        "`.{m}` takes {}",
                        if m == "since" {
                            "one condition"
                        } else {
                            "no arguments"
                        }
                    )));
                }
                (m, _) => {
                    self.pos = at;
                    return Err(self.error(unknown("method", m, METHODS)));
                }
            };
        }
        Ok(c)
    }

    fn args(&mut self) -> Result<Option<Vec<Arg>>, ParseError> {
        if !self.eat('(') {
            return Ok(None);
        }
        let mut args = Vec::new();
        if self.eat(')') {
            return Ok(Some(args));
        }
        loop {
            self.skip_ws();
            let rest = self.rest();
            if rest.starts_with('\'') || rest.starts_with('"') {
                args.push(Arg::Text(self.string()?));
            } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
                let len = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let n = rest[..len]
                    .parse()
                    .map_err(|_| self.error("number too large"))?;
                self.pos += len;
                args.push(Arg::Number(n));
            } else {
                args.push(Arg::Cond(self.expr()?));
            }
            if self.eat(')') {
                return Ok(Some(args));
            }
            self.expect(',')?;
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let quote = self.rest().chars().next().expect("a quote");
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        self.pos = start;
        Err(self.error("unterminated string"))
    }

    fn primary(&mut self) -> Result<Condition, ParseError> {
        if self.eat('(') {
            let c = self.expr()?;
            self.expect(')')?;
            return Ok(c);
        }
        let at = self.pos;
        let Some(name) = self.name().map(str::to_owned) else {
            self.skip_ws();
            return Err(self.error(if self.pos >= self.input.len() {
                "expected a condition, found the end".to_owned()
            } else {
                "expected a condition (a name such as `eager`, `missing`, `!`, or `(`)".to_owned()
            }));
        };
        let args = self.args()?;
        let bad = |p: &mut Self, what: &str| {
            p.pos = at;
            Err(p.error(format!("`{name}` takes {what}")))
        };
        let c = match (name.as_str(), args.as_deref()) {
            ("missing", None) => Condition::Missing,
            ("newly_updated", None) => Condition::NewlyUpdated,
            ("newly_requested", None) => Condition::NewlyRequested,
            ("in_progress", None) => Condition::InProgress,
            ("execution_failed", None) => Condition::ExecutionFailed,
            ("code_version_changed", None) => Condition::CodeVersionChanged,
            ("in_latest_partition", None) => Condition::InLatestPartition,
            ("any_deps_updated", None) => Condition::AnyDepsUpdated,
            ("any_deps_missing", None) => Condition::AnyDepsMissing,
            ("any_deps_in_progress", None) => Condition::AnyDepsInProgress,
            ("all_deps_blocking_checks_passed", None) => Condition::AllDepsBlockingChecksPassed,
            ("eager", None | Some([])) => Condition::eager(),
            ("on_missing", None | Some([])) => Condition::on_missing(),
            ("updated_within", Some([Arg::Number(secs)])) => {
                Condition::UpdatedWithin(Duration::from_secs(*secs))
            }
            ("updated_within", _) => return bad(self, "a number of seconds"),
            ("on_cron", Some([Arg::Text(cron)])) => Condition::on_cron(cron, "UTC"),
            ("on_cron", Some([Arg::Text(cron), Arg::Text(tz)])) => Condition::on_cron(cron, tz),
            ("on_cron", _) => return bad(self, "a cron expression and optionally a timezone"),
            ("cron_tick_passed", Some([Arg::Text(cron), Arg::Text(tz)])) => {
                Condition::CronTickPassed {
                    cron: cron.clone(),
                    timezone: tz.clone(),
                }
            }
            ("all_deps_updated_since_cron", Some([Arg::Text(cron), Arg::Text(tz)])) => {
                Condition::AllDepsUpdatedSinceCron {
                    cron: cron.clone(),
                    timezone: tz.clone(),
                }
            }
            ("cron_tick_passed" | "all_deps_updated_since_cron", _) => {
                return bad(self, "a cron expression and a timezone");
            }
            ("since", Some([Arg::Cond(a), Arg::Cond(b)])) => a.clone().since(b.clone()),
            ("since", _) => return bad(self, "two conditions: since(TRIGGER, RESET)"),
            ("newly_true", Some([Arg::Cond(a)])) => a.clone().newly_true(),
            ("newly_true", _) => return bad(self, "one condition"),
            (n, Some(_)) if OPERANDS.contains(&n) => return bad(self, "no arguments"),
            (n, _) => {
                self.pos = at;
                let known: Vec<&str> = OPERANDS.iter().chain(FUNCTIONS).copied().collect();
                return Err(self.error(unknown("condition", n, &known)));
            }
        };
        Ok(c)
    }
}

fn unknown(what: &str, name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, k)) if score > 0.8 => format!("unknown {what} `{name}` (did you mean `{k}`?)"),
        _ => format!("unknown {what} `{name}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_and_operators_parse() {
        assert_eq!(Condition::parse("eager").unwrap(), Condition::eager());
        assert_eq!(
            Condition::parse("on_cron('0 * * * *')").unwrap(),
            Condition::on_cron("0 * * * *", "UTC")
        );
        assert_eq!(
            Condition::parse("missing & !in_progress | execution_failed").unwrap(),
            (Condition::Missing & !Condition::InProgress) | Condition::ExecutionFailed
        );
        assert_eq!(
            Condition::parse("any_deps_updated.since_last_handled() & !updated_within(300)")
                .unwrap(),
            Condition::AnyDepsUpdated.since_last_handled()
                & !Condition::UpdatedWithin(Duration::from_secs(300))
        );
        assert_eq!(
            Condition::parse("since(newly_updated, missing)").unwrap(),
            Condition::NewlyUpdated.since(Condition::Missing)
        );
    }

    #[test]
    fn display_parses_back() {
        for c in [
            Condition::eager(),
            Condition::on_cron("10 * * * *", "Europe/Paris"),
            Condition::on_missing(),
            !(Condition::Missing | Condition::InProgress) & !!Condition::NewlyUpdated,
            Condition::And(vec![
                Condition::Missing,
                Condition::And(vec![Condition::InProgress, Condition::NewlyUpdated]),
            ]),
            Condition::on_cron("0 0 * * *", "it's"),
        ] {
            let text = c.to_string();
            assert_eq!(Condition::parse(&text).unwrap(), c, "{text}");
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = Condition::parse("eagre").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid automation condition `eagre`: unknown condition `eagre` (did you mean `eager`?) (at character 1)"
        );
        let e = Condition::parse("missing &").unwrap_err();
        assert!(e.message.contains("found the end"), "{e}");
        let e = Condition::parse("missing missing").unwrap_err();
        assert_eq!(e.position, 8);
        let e = Condition::parse("updated_within('x')").unwrap_err();
        assert!(e.message.contains("a number of seconds"), "{e}");
        let e = Condition::parse("on_cron('0 * * * *").unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
        let deep = format!("{}missing{}", "(".repeat(100), ")".repeat(100));
        assert!(Condition::parse(&deep).unwrap_err().message.contains("64"));
        let bangs = format!("{}missing", "!".repeat(100));
        assert!(Condition::parse(&bangs).is_err());
        assert!(Condition::parse(&"x".repeat(20_000)).is_err());
    }
}

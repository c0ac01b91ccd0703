//! Declarative automation: a condition on an asset says when it should be materialized, per
//! partition, from facts about it and its dependencies (what was materialized when, what is in
//! progress, what failed). Conditions compose like Dagster's `AutomationCondition`: operands
//! ([`Condition::Missing`], [`Condition::AnyDepsUpdated`], ...) combined with `&`, `|`, `!`,
//! [`Condition::since`] and [`Condition::newly_true`], and three ready-made policies:
//! [`Condition::eager`], [`Condition::on_cron`] and [`Condition::on_missing`].
//!
//! Evaluation ([`eval`]) is pure: the runtime passes the facts, the time and the previous
//! tick's state, and gets back which partitions to request, a tree saying which nodes were
//! true for which partitions, and the next state. The text form ([`parse`]) is what
//! `orch.toml` declares (`automation = "eager"`, `"on_cron('0 * * * *', 'UTC')"`,
//! `"missing & !any_deps_in_progress"`); [`Condition`]'s `Display` writes that same form, so a
//! condition round-trips through text.

pub mod eval;
pub mod parse;
pub mod stale;

use std::fmt;
use std::time::Duration;

pub use eval::{
    AssetEvaluation, AssetState, AutomationState, Evaluation, EvaluationInput, Facts, FactsTable,
    Materialized, NodeEvaluation, UNPARTITIONED, Window, batch_requests, evaluate,
};
pub use parse::ParseError;
pub use stale::{StaleReason, stale_partitions, stale_reason};

/// When an asset partition should be materialized. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Never materialized.
    Missing,
    /// Materialized since the previous evaluation.
    NewlyUpdated,
    /// Requested by the previous evaluation.
    NewlyRequested,
    /// A run that will materialize it is queued or running.
    InProgress,
    /// Its latest attempt failed (after its latest materialization).
    ExecutionFailed,
    /// Its code version differs from the one its latest materialization ran with.
    CodeVersionChanged,
    /// Materialized within the last this long.
    UpdatedWithin(Duration),
    /// The newest partition of the evaluated window (always true for an unpartitioned asset).
    InLatestPartition,
    /// A dependency partition was materialized since the previous evaluation, or will be by a
    /// run this evaluation requests.
    AnyDepsUpdated,
    /// A dependency partition is missing and not requested by this evaluation.
    AnyDepsMissing,
    /// A dependency partition is being materialized.
    AnyDepsInProgress,
    /// Every blocking check of every dependency partition's latest materialization passed.
    AllDepsBlockingChecksPassed,
    /// A tick of this cron schedule passed since the previous evaluation.
    CronTickPassed {
        cron: String,
        timezone: String,
    },
    /// Every dependency partition was materialized after the latest tick of this cron
    /// schedule (or will be by this evaluation's runs).
    AllDepsUpdatedSinceCron {
        cron: String,
        timezone: String,
    },
    /// True where the inner condition is true now and was not at the previous evaluation.
    NewlyTrue(Box<Condition>),
    /// True from when `trigger` is true until `reset` is (if both are true at once: false).
    Since {
        trigger: Box<Condition>,
        reset: Box<Condition>,
    },
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    /// Materialize when dependencies changed (or the partition went missing), once per change,
    /// when nothing upstream is missing or in progress and no run of it is in progress:
    /// `(newly_true(missing) | any_deps_updated).since(newly_requested | newly_updated)
    /// & !any_deps_missing & !any_deps_in_progress & !in_progress`.
    pub fn eager() -> Condition {
        (Condition::Missing.newly_true() | Condition::AnyDepsUpdated).since_last_handled()
            & !Condition::AnyDepsMissing
            & !Condition::AnyDepsInProgress
            & !Condition::InProgress
    }

    /// Materialize the newest partition once per tick of `cron` in `timezone`, after every
    /// dependency was updated since that tick.
    pub fn on_cron(cron: &str, timezone: &str) -> Condition {
        Condition::InLatestPartition
            & Condition::CronTickPassed {
                cron: cron.to_owned(),
                timezone: timezone.to_owned(),
            }
            .since_last_handled()
            & Condition::AllDepsUpdatedSinceCron {
                cron: cron.to_owned(),
                timezone: timezone.to_owned(),
            }
    }

    /// Materialize partitions that went missing, once, when their dependencies are there.
    pub fn on_missing() -> Condition {
        Condition::Missing.newly_true().since_last_handled()
            & !Condition::AnyDepsMissing
            & !Condition::InProgress
    }

    /// True from when `self` is true until `reset` is.
    pub fn since(self, reset: Condition) -> Condition {
        Condition::Since {
            trigger: Box::new(self),
            reset: Box::new(reset),
        }
    }

    /// `self.since(newly_requested | newly_updated)`: true from when `self` is until the
    /// partition is requested or materialized.
    pub fn since_last_handled(self) -> Condition {
        self.since(Condition::handled())
    }

    /// The reset of [`Condition::since_last_handled`]: the partition was requested or updated.
    pub(crate) fn handled() -> Condition {
        Condition::NewlyRequested | Condition::NewlyUpdated
    }

    /// True where `self` became true at this evaluation.
    pub fn newly_true(self) -> Condition {
        Condition::NewlyTrue(Box::new(self))
    }

    /// The condition's name when it is one of the ready-made policies (`eager`,
    /// `on_missing`, `on_cron('0 * * * *', 'UTC')`), else its whole text form.
    pub fn short(&self) -> String {
        if *self == Condition::eager() {
            return "eager".to_owned();
        }
        if *self == Condition::on_missing() {
            return "on_missing".to_owned();
        }
        if let Condition::And(cs) = self
            && let Some(Condition::AllDepsUpdatedSinceCron { cron, timezone }) = cs.last()
            && *self == Condition::on_cron(cron, timezone)
        {
            return format!("on_cron({}, {})", quoted(cron), quoted(timezone));
        }
        self.to_string()
    }

    /// The direct sub-conditions, in order.
    pub fn children(&self) -> Vec<&Condition> {
        match self {
            Condition::NewlyTrue(c) | Condition::Not(c) => vec![c],
            Condition::Since { trigger, reset } => vec![trigger, reset],
            Condition::And(cs) | Condition::Or(cs) => cs.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// A short label for this node alone (its operator or operand), as shown in the
    /// evaluation tree.
    pub fn label(&self) -> String {
        match self {
            Condition::And(_) => "and".to_owned(),
            Condition::Or(_) => "or".to_owned(),
            Condition::Not(_) => "not".to_owned(),
            Condition::NewlyTrue(_) => "newly_true".to_owned(),
            Condition::Since { .. } => "since".to_owned(),
            leaf => leaf.to_string(),
        }
    }

    /// The cron schedules this condition reads, to validate them once up front.
    pub fn crons(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        self.walk(&mut |c| {
            if let Condition::CronTickPassed { cron, timezone }
            | Condition::AllDepsUpdatedSinceCron { cron, timezone } = c
            {
                out.push((cron.as_str(), timezone.as_str()));
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Condition)) {
        f(self);
        for c in self.children() {
            c.walk(f);
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Condition::Or(_) => 1,
            Condition::And(_) => 2,
            Condition::Not(_) => 3,
            _ => 4,
        }
    }

    fn fmt_child(&self, f: &mut fmt::Formatter<'_>, parent: u8) -> fmt::Result {
        if self.precedence() <= parent {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl std::ops::BitAnd for Condition {
    type Output = Condition;
    fn bitand(self, rhs: Condition) -> Condition {
        match self {
            Condition::And(mut cs) => {
                cs.push(rhs);
                Condition::And(cs)
            }
            lhs => Condition::And(vec![lhs, rhs]),
        }
    }
}

impl std::ops::BitOr for Condition {
    type Output = Condition;
    fn bitor(self, rhs: Condition) -> Condition {
        match self {
            Condition::Or(mut cs) => {
                cs.push(rhs);
                Condition::Or(cs)
            }
            lhs => Condition::Or(vec![lhs, rhs]),
        }
    }
}

impl std::ops::Not for Condition {
    type Output = Condition;
    fn not(self) -> Condition {
        Condition::Not(Box::new(self))
    }
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Missing => f.write_str("missing"),
            Condition::NewlyUpdated => f.write_str("newly_updated"),
            Condition::NewlyRequested => f.write_str("newly_requested"),
            Condition::InProgress => f.write_str("in_progress"),
            Condition::ExecutionFailed => f.write_str("execution_failed"),
            Condition::CodeVersionChanged => f.write_str("code_version_changed"),
            Condition::UpdatedWithin(d) => write!(f, "updated_within({})", d.as_secs()),
            Condition::InLatestPartition => f.write_str("in_latest_partition"),
            Condition::AnyDepsUpdated => f.write_str("any_deps_updated"),
            Condition::AnyDepsMissing => f.write_str("any_deps_missing"),
            Condition::AnyDepsInProgress => f.write_str("any_deps_in_progress"),
            Condition::AllDepsBlockingChecksPassed => {
                f.write_str("all_deps_blocking_checks_passed")
            }
            Condition::CronTickPassed { cron, timezone } => {
                write!(
                    f,
                    "cron_tick_passed({}, {})",
                    quoted(cron),
                    quoted(timezone)
                )
            }
            Condition::AllDepsUpdatedSinceCron { cron, timezone } => write!(
                f,
                "all_deps_updated_since_cron({}, {})",
                quoted(cron),
                quoted(timezone)
            ),
            Condition::NewlyTrue(c) => write!(f, "newly_true({c})"),
            Condition::Since { trigger, reset } => write!(f, "since({trigger}, {reset})"),
            Condition::Not(c) => {
                f.write_str("!")?;
                c.fmt_child(f, 2)
            }
            Condition::And(cs) | Condition::Or(cs) => {
                let (op, prec) = if matches!(self, Condition::And(_)) {
                    (" & ", 2)
                } else {
                    (" | ", 1)
                };
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(op)?;
                    }
                    c.fmt_child(f, prec)?;
                }
                Ok(())
            }
        }
    }
}

//! The runs list: its query (filters and keyset cursors both ways) and its pages.

use orch::RunStatus;
use orch::storage::RunFilter;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_PAGE, MAX_PAGE, RunView, nonempty, parse_asset_key};
use crate::AppState;
use crate::error::WebError;

/// The runs list's query parameters, as typed.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RunsQuery {
    /// Statuses, comma separated (any case).
    pub status: Option<String>,
    pub asset: Option<String>,
    pub partition: Option<String>,
    /// `key=value`.
    pub tag: Option<String>,
    /// What launched the runs: `schedule`, `sensor`, `backfill`, `automation`, `web`, `cli`, ...
    pub launched_by: Option<String>,
    /// Keyset cursor: runs older than this one (its position, `next` of the previous page).
    pub before: Option<String>,
    /// Keyset cursor the other way: runs newer than this one (`prev` of the next page).
    pub after: Option<String>,
    pub limit: Option<String>,
}

impl RunsQuery {
    pub fn filter(&self) -> Result<RunFilter, WebError> {
        let mut filter = RunFilter::default();
        if let Some(statuses) = nonempty(&self.status) {
            for s in statuses.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let status = RunStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                    WebError::BadRequest(format!(
                        "unknown run status `{s}` (use queued, starting, started, success, failure, canceling or canceled)"
                    ))
                })?;
                filter.statuses.push(status);
            }
        }
        if let Some(asset) = nonempty(&self.asset) {
            filter.asset_key = Some(parse_asset_key(asset)?);
        }
        filter.partition_key = nonempty(&self.partition).map(str::to_owned);
        if let Some(tag) = nonempty(&self.tag) {
            let (k, v) = tag.split_once('=').ok_or_else(|| {
                WebError::BadRequest(format!("bad tag filter `{tag}`: write it key=value"))
            })?;
            filter.tag = Some((k.trim().to_owned(), v.trim().to_owned()));
        }
        if let Some(by) = nonempty(&self.launched_by) {
            if filter.tag.is_some() {
                return Err(WebError::BadRequest(
                    "filter by `tag` or by `launched_by`, not both".into(),
                ));
            }
            filter.tag = Some((
                orch::request::tags::LAUNCHED_BY.to_owned(),
                by.to_ascii_lowercase(),
            ));
        }
        if let Some(before) = nonempty(&self.before) {
            filter.before_id = Some(before.parse::<i64>().map_err(|_| {
                WebError::BadRequest(format!(
                    "bad cursor `before={before}`: use the `next` of the previous page"
                ))
            })?);
        }
        if let Some(after) = nonempty(&self.after) {
            filter.after_id = Some(after.parse::<i64>().map_err(|_| {
                WebError::BadRequest(format!(
                    "bad cursor `after={after}`: use the `prev` of the next page"
                ))
            })?);
        }
        let limit = match nonempty(&self.limit) {
            None => DEFAULT_PAGE,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(WebError::BadRequest(format!(
                        "bad limit `{l}`: use a number from 1 to {MAX_PAGE}"
                    )));
                }
            },
        };
        filter.limit = Some(limit);
        Ok(filter)
    }

    /// The query string of this filter, without a cursor.
    pub fn query_string(&self) -> String {
        self.with_cursor(None, None)
    }

    /// The query string of this filter with another cursor, for the next page's link.
    pub fn with_before(&self, before: i64) -> String {
        self.with_cursor(Some(before), None)
    }

    /// The query string of this filter with another cursor, for the previous page's link.
    pub fn with_after(&self, after: i64) -> String {
        self.with_cursor(None, Some(after))
    }

    fn with_cursor(&self, before: Option<i64>, after: Option<i64>) -> String {
        let mut q = RunsQuery {
            before: before.map(|b| b.to_string()),
            after: after.map(|a| a.to_string()),
            ..self.clone()
        };
        for field in [
            &mut q.status,
            &mut q.asset,
            &mut q.partition,
            &mut q.tag,
            &mut q.launched_by,
            &mut q.limit,
        ] {
            if field.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *field = None;
            }
        }
        serde_urlencoded_lite(&q)
    }
}

/// `a=b&c=d` from a flat struct of optional strings, percent-encoded.
fn serde_urlencoded_lite(q: &RunsQuery) -> String {
    let pairs = [
        ("status", &q.status),
        ("asset", &q.asset),
        ("partition", &q.partition),
        ("tag", &q.tag),
        ("launched_by", &q.launched_by),
        ("limit", &q.limit),
        ("before", &q.before),
        ("after", &q.after),
    ];
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            url.append_pair(k, v);
        }
    }
    url.finish()
}

#[derive(Debug, Serialize)]
pub struct RunsPage {
    pub runs: Vec<RunView>,
    /// The cursor of the next page (`before=`), if there may be one.
    pub next: Option<i64>,
    /// The cursor of the previous page, of newer runs (`after=`), if there may be one.
    pub prev: Option<i64>,
}

pub async fn runs_page(state: &AppState, query: &RunsQuery) -> Result<RunsPage, WebError> {
    let mut filter = query.filter()?;
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE) as usize;
    // One more than the page, to know whether there is more in the direction of travel.
    filter.limit = Some(limit as u32 + 1);
    let mut runs = state.storage.list_runs(&filter).await?;
    let more = runs.len() > limit;
    if more {
        if filter.after_id.is_some() {
            runs.remove(0);
        } else {
            runs.pop();
        }
    }
    let (newest, oldest) = (runs.first().map(|r| r.id), runs.last().map(|r| r.id));
    let (next, prev) = match (filter.before_id, filter.after_id) {
        // Paged back from newer runs: they are there; older ones if there were more.
        (Some(before), None) => (
            more.then_some(oldest).flatten(),
            newest.or(Some(before - 1)),
        ),
        // Paged forward from older runs: they are there; newer ones if there were more.
        (None, Some(after)) => (oldest.or(Some(after + 1)), more.then_some(newest).flatten()),
        _ => (more.then_some(oldest).flatten(), None),
    };
    Ok(RunsPage {
        runs: runs.iter().map(RunView::new).collect(),
        next,
        prev,
    })
}

//! eventsim in Rust: simulated users of a music-streaming site, written as the four topics of
//! eventsim's Kafka fork (`listen_events`, `page_view_events`, `auth_events`,
//! `status_change_events`) with eventsim's JSON field names.
//!
//! A port of eventsim's model, not of its code: users with a request rate (`alpha`) and a
//! session rate (`beta`), each scaled per user by a log-normal factor; sessions that walk a
//! page transition state machine ([`Site`]) until it ends them; a daily cycle and a weekend
//! damping in each user's local time; free and paid levels, upgrades, downgrades,
//! cancellations, logins and logouts; guests who may register; a user base that grows (and
//! wears away) at annual rates; a generated song catalogue with a long-tailed popularity; and
//! users placed in real US cities weighted by population.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use orch_eventsim::{Config, JsonlSink, run};
//! let start = "2026-11-22T00:00:00Z".parse()?;
//! let end = "2026-11-23T00:00:00Z".parse()?;
//! let config = Config::new(1, 2_000, start, end);
//! let mut sink = JsonlSink::create("out").await?;
//! let summary = run(&config, &mut sink, &Default::default()).await?;
//! println!("{} events", summary.events());
//! # Ok(()) }
//! ```
//!
//! Determinism: the same [`Config`] gives the same events, whatever the speed and however
//! the caller consumes them. Every random draw comes from streams seeded by the seed, the
//! start and the user; [`Simulation`] reads no clock.

mod calendar;
mod catalogue;
mod config;
mod event;
mod rng;
mod run;
mod sim;
mod sink;
mod site;
mod tables;
mod user;

pub use calendar::{Cycle, is_day_off, is_us_holiday};
pub use catalogue::{Catalogue, DEFAULT_SONGS, Song};
pub use config::{Config, ConfigError, SiteParams, Speed};
pub use event::{AuthEvent, Event, EventId, ListenEvent, PageViewEvent, StatusChangeEvent, Topic};
pub use run::{RunError, Summary, run};
pub use sim::Simulation;
pub use sink::{CountingSink, JsonlSink, MemorySink, Sink, SinkError};
pub use site::{Auth, Level, Method, Page, Site, State};
pub use tables::{City, Gender, cities};

#[cfg(test)]
mod tests;

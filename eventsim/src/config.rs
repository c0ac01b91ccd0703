//! What to simulate: how many users, over which time range, from which seed, and at what
//! pace; and the site's parameters, whose defaults are those of eventsim's example config.

use chrono::{DateTime, Utc};

use crate::calendar::Cycle;
use crate::catalogue::DEFAULT_SONGS;

/// How fast events come out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the generator and the sink go.
    Fast,
    /// Paced so that event time tracks wall time, `factor` times faster than real time (1.0 is
    /// real time, eventsim's `--continuous`): the event at `start + d` comes out `d / factor`
    /// after the run began.
    RealTime { factor: f64 },
}

impl std::str::FromStr for Speed {
    type Err = String;

    /// `fast`, `realtime`, or a factor such as `60x`.
    fn from_str(s: &str) -> Result<Speed, String> {
        match s {
            "fast" => Ok(Speed::Fast),
            "realtime" | "real-time" | "1x" => Ok(Speed::RealTime { factor: 1.0 }),
            _ => {
                let factor = s
                    .strip_suffix(['x', 'X'])
                    .and_then(|f| f.parse::<f64>().ok())
                    .filter(|f| f.is_finite() && *f > 0.0)
                    .ok_or_else(|| {
                        format!("speed must be fast, realtime or a factor such as 60x, not {s:?}")
                    })?;
                Ok(Speed::RealTime { factor })
            }
        }
    }
}

/// The site's behaviour: eventsim's config keys, with the values of its example config.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteParams {
    /// Mean seconds between a user's requests within a session (`alpha`), scaled per user
    /// by a log-normal factor of mean 1.
    pub alpha: f64,
    /// Mean seconds between a user's sessions (`beta`), scaled per user likewise.
    pub beta: f64,
    /// Seconds added to every gap between sessions (`session-gap`, 30 minutes per IAB).
    pub session_gap: f64,
    /// The daily cycle and the weekend damping.
    pub cycle: Cycle,
    /// Weights of the initial users' levels (`levels`): free, paid.
    pub level_weights: [f64; 2],
    /// Weights of the initial users' auth (`auths`): guest, logged in, logged out.
    pub auth_weights: [f64; 3],
}

impl Default for SiteParams {
    fn default() -> SiteParams {
        SiteParams {
            alpha: 90.0,
            beta: 604_800.0,
            session_gap: 1_800.0,
            cycle: Cycle {
                damping: 0.09375,
                weekend_damping: 0.5,
                weekend_damping_offset_minutes: 180,
                weekend_damping_scale_minutes: 360,
            },
            level_weights: [10.0, 2.0],
            auth_weights: [0.0, 10.0, 1.0],
        }
    }
}

/// A simulation: who, when, from which seed, how fast.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The same seed (with the same other settings) gives the same events.
    pub seed: u64,
    /// Users at the start (eventsim's `--nusers`).
    pub users: u32,
    /// Events at or after `start` and before `end` are written; users are simulated from
    /// before `start` so that the start finds them mid-life, as eventsim does.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Annual growth of the user base, as a fraction (eventsim's `--growth-rate`; 0.01 is 1%
    /// a year). New users arrive as guests, at exponentially distributed intervals.
    pub growth_rate: f64,
    /// Annual attrition, as a fraction (eventsim's `--attrition-rate`): a user leaves after a
    /// session with the probability that makes this share leave in a year; they simply stop,
    /// unlike a cancellation, which the events show.
    pub attrition_rate: f64,
    pub speed: Speed,
    /// The first user's id (eventsim's `--userid`); users are numbered from there.
    pub first_user_id: u64,
    /// Songs in the generated catalogue.
    pub songs: usize,
    pub site: SiteParams,
}

/// A configuration that cannot be simulated.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("the time range is empty: {start} is not before {end}")]
    EmptyRange {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("{name} must be a finite number of at least 0, not {value}")]
    BadRate { name: &'static str, value: f64 },
    #[error("the speed factor must be a finite number above 0, not {0}")]
    BadSpeed(f64),
    #[error("the catalogue needs at least one song")]
    NoSongs,
    #[error("site parameter {name} must be a finite number above 0, not {value}")]
    BadParam { name: &'static str, value: f64 },
}

impl Config {
    /// `users` users from `start` to `end` with this seed; the rest as eventsim's example
    /// config and Streamify's run (which grows the user base tenfold a year).
    pub fn new(seed: u64, users: u32, start: DateTime<Utc>, end: DateTime<Utc>) -> Config {
        Config {
            seed,
            users,
            start,
            end,
            growth_rate: 10.0,
            attrition_rate: 0.0,
            speed: Speed::Fast,
            first_user_id: 1,
            songs: DEFAULT_SONGS,
            site: SiteParams::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.start >= self.end {
            return Err(ConfigError::EmptyRange {
                start: self.start,
                end: self.end,
            });
        }
        for (name, value) in [
            ("growth rate", self.growth_rate),
            ("attrition rate", self.attrition_rate),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::BadRate { name, value });
            }
        }
        if let Speed::RealTime { factor } = self.speed
            && (!factor.is_finite() || factor <= 0.0)
        {
            return Err(ConfigError::BadSpeed(factor));
        }
        if self.songs == 0 {
            return Err(ConfigError::NoSongs);
        }
        let site = &self.site;
        for (name, value) in [
            ("alpha", site.alpha),
            ("beta", site.beta),
            ("session-gap", site.session_gap),
            ("level weights", site.level_weights.iter().sum()),
            ("auth weights", site.auth_weights.iter().sum()),
        ] {
            if !value.is_finite() || value <= 0.0 {
                return Err(ConfigError::BadParam { name, value });
            }
        }
        let weights = site.level_weights.iter().chain(&site.auth_weights);
        if let Some(&value) = weights.into_iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(ConfigError::BadParam {
                name: "weights",
                value,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("fast".parse(), Ok(Speed::Fast));
        assert_eq!("realtime".parse(), Ok(Speed::RealTime { factor: 1.0 }));
        assert_eq!("60x".parse(), Ok(Speed::RealTime { factor: 60.0 }));
        assert_eq!("0.5x".parse(), Ok(Speed::RealTime { factor: 0.5 }));
        assert!("0x".parse::<Speed>().is_err());
        assert!("quick".parse::<Speed>().is_err());
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let ok = Config::new(1, 10, t("2026-11-22T00:00:00Z"), t("2026-11-23T00:00:00Z"));
        assert_eq!(ok.validate(), Ok(()));
        let mut c = ok.clone();
        c.end = c.start;
        assert!(c.validate().unwrap_err().to_string().contains("empty"));
        let mut c = ok.clone();
        c.growth_rate = -1.0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("growth rate")
        );
        let mut c = ok.clone();
        c.speed = Speed::RealTime { factor: 0.0 };
        assert!(c.validate().is_err());
        let mut c = ok;
        c.site.auth_weights = [0.0, 0.0, 0.0];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("auth weights")
        );
    }
}

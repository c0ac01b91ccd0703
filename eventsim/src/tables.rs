//! The embedded tables users are drawn from: US cities weighted by population (with a real
//! ZIP code, coordinates and time zone each), first names with gender and last names
//! weighted by frequency, and common user agents. `eventsim/data/README.md` says where each
//! table comes from.

use std::sync::{Arc, LazyLock};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::rng::Weighted;

/// A user's gender, as eventsim writes it (`M`, `F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Gender {
    #[serde(rename = "M")]
    Male,
    #[serde(rename = "F")]
    Female,
}

impl Gender {
    pub fn name(self) -> &'static str {
        match self {
            Gender::Male => "M",
            Gender::Female => "F",
        }
    }
}

/// A place users live in.
#[derive(Clone, Debug)]
pub struct City {
    pub city: Arc<str>,
    /// Two-letter state code.
    pub state: Arc<str>,
    pub zip: Arc<str>,
    pub lat: f64,
    pub lon: f64,
    pub population: u64,
    /// The city's time zone: the daily cycle and weekends follow local time.
    pub timezone: Tz,
}

pub(crate) struct Tables {
    pub(crate) cities: Vec<City>,
    pub(crate) city_weights: Weighted,
    pub(crate) first_names: Vec<(Arc<str>, Gender)>,
    pub(crate) first_name_weights: Weighted,
    pub(crate) last_names: Vec<Arc<str>>,
    pub(crate) last_name_weights: Weighted,
    pub(crate) user_agents: Vec<Arc<str>>,
    pub(crate) user_agent_weights: Weighted,
}

const CITIES_CSV: &str = include_str!("../data/us_cities.csv");
const FIRST_NAMES_CSV: &str = include_str!("../data/first_names.csv");
const LAST_NAMES_CSV: &str = include_str!("../data/last_names.csv");

/// Common user agents of desktop and mobile browsers, with relative weights.
const USER_AGENTS: &[(&str, f64)] = &[
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        22.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.143 Safari/537.36",
        9.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        10.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        8.0,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.77.4 (KHTML, like Gecko) Version/7.0.5 Safari/537.77.4",
        4.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
        6.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:31.0) Gecko/20100101 Firefox/31.0",
        3.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        5.0,
    ),
    (
        "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0)",
        1.0,
    ),
    (
        "Mozilla/5.0 (Windows NT 6.3; WOW64; Trident/7.0; rv:11.0) like Gecko",
        2.0,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        2.0,
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        1.0,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        14.0,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko) Version/7.0 Mobile/11D257 Safari/9537.53",
        2.0,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        4.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
        7.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
        4.0,
    ),
    (
        "Mozilla/5.0 (Linux; Android 4.4.2; SM-G900V Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.131 Mobile Safari/537.36",
        1.0,
    ),
];

pub(crate) static TABLES: LazyLock<Tables> = LazyLock::new(Tables::load);

/// The cities users are placed in, with their populations (which weight the draw).
pub fn cities() -> &'static [City] {
    &TABLES.cities
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',').collect()
}

impl Tables {
    fn load() -> Tables {
        // The tables are part of the crate; a malformed row is a bug caught by the tests.
        let cities: Vec<City> = CITIES_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f = fields(line);
                City {
                    city: f[0].into(),
                    state: f[1].into(),
                    zip: f[2].into(),
                    lat: f[3].parse().expect("lat"),
                    lon: f[4].parse().expect("lon"),
                    population: f[5].parse().expect("population"),
                    timezone: f[6].parse().expect("time zone"),
                }
            })
            .collect();
        let city_weights = Weighted::new(cities.iter().map(|c| c.population as f64));
        let first: Vec<(Arc<str>, Gender, f64)> = FIRST_NAMES_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f = fields(line);
                let gender = if f[1] == "M" {
                    Gender::Male
                } else {
                    Gender::Female
                };
                (f[0].into(), gender, f[2].parse().expect("weight"))
            })
            .collect();
        let last: Vec<(Arc<str>, f64)> = LAST_NAMES_CSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f = fields(line);
                (f[0].into(), f[1].parse().expect("weight"))
            })
            .collect();
        Tables {
            city_weights,
            cities,
            first_name_weights: Weighted::new(first.iter().map(|f| f.2)),
            first_names: first.into_iter().map(|(n, g, _)| (n, g)).collect(),
            last_name_weights: Weighted::new(last.iter().map(|l| l.1)),
            last_names: last.into_iter().map(|(n, _)| n).collect(),
            user_agent_weights: Weighted::new(USER_AGENTS.iter().map(|u| u.1)),
            user_agents: USER_AGENTS.iter().map(|u| u.0.into()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_load_and_hold_what_they_should() {
        let t = &*TABLES;
        assert_eq!(t.cities.len(), 400);
        assert!(
            t.cities
                .iter()
                .all(|c| c.zip.len() == 5 && c.state.len() == 2)
        );
        assert!(t.cities.iter().all(|c| (18.0..72.0).contains(&c.lat)));
        assert!(t.cities.iter().all(|c| (-170.0..-60.0).contains(&c.lon)));
        let nyc = &t.cities[0];
        assert_eq!((&*nyc.city, &*nyc.state), ("New York", "NY"));
        assert_eq!(nyc.timezone, chrono_tz::America::New_York);
        assert_eq!(t.first_names.len(), 600);
        assert!(t.first_names.iter().any(|f| f.1 == Gender::Male));
        assert_eq!(t.last_names.len(), 1000);
        assert_eq!(t.user_agents.len(), t.user_agent_weights.len());
        // New York City is the most likely place by far.
        assert!(t.city_weights.probability(0) > 0.05);
    }
}

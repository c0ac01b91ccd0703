//! The song catalogue. eventsim reads the Million Song Dataset's listen counts, which cannot
//! be downloaded here, so the catalogue is generated: artists with made-up names, songs with
//! titles and durations (log-normal around four minutes), and a long-tailed popularity:
//! artists are Zipf-distributed, and so are the songs within an artist, which gives songs a
//! Zipf-like tail (a few songs get most plays, most songs are rarely played).
//!
//! The catalogue depends only on its size, not on the simulation's seed: every run of the
//! same size plays from the same songs. As eventsim does with its similar-songs file, the
//! next song of a session is now and then another song of the same artist.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use crate::rng::{Rng, Weighted};

/// A song of the catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Song {
    pub artist: Arc<str>,
    pub title: Arc<str>,
    /// Seconds, with eventsim's five decimals.
    pub duration: f64,
}

/// The songs users play.
#[derive(Debug)]
pub struct Catalogue {
    songs: Vec<Song>,
    /// Per song: the range of its artist's songs.
    artist_of: Vec<u32>,
    artists: Vec<(Range<usize>, Weighted)>,
    popularity: Weighted,
}

/// Fixes the catalogue for good (it depends on its size only).
const CATALOGUE_SEED: u64 = 0x5EED_50A6;
/// The default size: as many songs as the Million Song subset eventsim ships with.
pub const DEFAULT_SONGS: usize = 10_000;
/// The chance that the next song of a session is by the artist just played.
const SAME_ARTIST: f64 = 0.25;
/// Zipf exponents of artists' popularity and of songs' within an artist.
const ARTIST_EXPONENT: f64 = 1.1;
const SONG_EXPONENT: f64 = 1.0;

impl Catalogue {
    /// A catalogue of `songs` songs (at least one).
    pub fn generate(songs: usize) -> Catalogue {
        let songs = songs.max(1);
        let mut rng = Rng::new(CATALOGUE_SEED ^ songs as u64);
        let n_artists = (songs / 8).max(1);

        let mut names = HashSet::new();
        let artist_names: Vec<Arc<str>> = (0..n_artists)
            .map(|_| Arc::from(unique(&mut names, &mut rng, artist_name)))
            .collect();

        // How many songs each artist has: one each, the rest spread by a Zipf-like
        // prolificness, so that a few artists have long discographies.
        let mut counts = vec![1usize; n_artists];
        let prolific = Weighted::new((0..n_artists).map(|i| 1.0 / (i as f64 + 1.0).powf(0.8)));
        for _ in n_artists..songs {
            counts[prolific.sample(&mut rng)] += 1;
        }
        // Popularity is independent of prolificness: a random rank for each artist.
        let mut ranks: Vec<usize> = (0..n_artists).collect();
        for i in (1..n_artists).rev() {
            ranks.swap(i, rng.below(i + 1));
        }

        let mut all = Vec::with_capacity(songs);
        let mut artist_of = Vec::with_capacity(songs);
        let mut artists = Vec::with_capacity(n_artists);
        let mut weights = Vec::with_capacity(songs);
        for (a, name) in artist_names.iter().enumerate() {
            let artist_weight = 1.0 / (ranks[a] as f64 + 1.0).powf(ARTIST_EXPONENT);
            let start = all.len();
            let mut titles = HashSet::new();
            for k in 0..counts[a] {
                let title = unique(&mut titles, &mut rng, song_title);
                let seconds = (225.0 * (0.35 * rng.gaussian()).exp()).clamp(45.0, 1200.0);
                all.push(Song {
                    artist: name.clone(),
                    title: title.into(),
                    duration: (seconds * 100_000.0).round() / 100_000.0,
                });
                artist_of.push(a as u32);
                weights.push(artist_weight / (k as f64 + 1.0).powf(SONG_EXPONENT));
            }
            let range = start..all.len();
            let within = Weighted::new(weights[range.clone()].iter().copied());
            artists.push((range, within));
        }
        Catalogue {
            songs: all,
            artist_of,
            artists,
            popularity: Weighted::new(weights),
        }
    }

    pub fn songs(&self) -> &[Song] {
        &self.songs
    }

    pub fn song(&self, index: usize) -> &Song {
        &self.songs[index]
    }

    /// The probability that a song drawn afresh (not after another) is this one.
    pub fn popularity(&self, index: usize) -> f64 {
        self.popularity.probability(index)
    }

    /// The next song after `previous` (eventsim's `RandomSongGenerator.nextSong`).
    pub(crate) fn next_song(&self, rng: &mut Rng, previous: Option<usize>) -> usize {
        if let Some(previous) = previous
            && rng.chance(SAME_ARTIST)
        {
            let (range, within) = &self.artists[self.artist_of[previous] as usize];
            return range.start + within.sample(rng);
        }
        self.popularity.sample(rng)
    }
}

/// A name from `make` that is not in `taken` yet (and is then taken): after a few tries, a
/// number tells it apart, so that any size of catalogue can be named.
fn unique(taken: &mut HashSet<String>, rng: &mut Rng, make: fn(&mut Rng) -> String) -> String {
    for _ in 0..20 {
        let name = make(rng);
        if taken.insert(name.clone()) {
            return name;
        }
    }
    let base = make(rng);
    let mut n = 2;
    loop {
        let name = format!("{base} {n}");
        if taken.insert(name.clone()) {
            return name;
        }
        n += 1;
    }
}

const ADJECTIVES: &[&str] = &[
    "Silver", "Golden", "Electric", "Velvet", "Broken", "Hollow", "Midnight", "Crimson", "Neon",
    "Wild", "Quiet", "Lonely", "Burning", "Frozen", "Bitter", "Sweet", "Restless", "Lucky",
    "Gentle", "Savage", "Distant", "Blue", "Black", "White", "Scarlet", "Emerald", "Paper",
    "Glass", "Iron", "Wooden", "Northern", "Southern", "Western", "Eastern", "Little", "Big",
    "Young", "Old", "Lost", "Hidden", "Faded", "Shining", "Dancing", "Falling", "Rising",
    "Sleeping", "Howling", "Painted", "Secret", "Sacred", "Crooked", "Empty", "Heavy", "Tender",
    "Cosmic", "Lunar", "Solar", "Magnetic", "Honest", "Careless", "Endless", "Hungry", "Rusty",
    "Dusty", "Stormy", "Sunny", "Rainy", "Misty", "Humble", "Royal",
];

const NOUNS: &[&str] = &[
    "Heart",
    "River",
    "Fire",
    "Rain",
    "Road",
    "Dream",
    "Night",
    "Morning",
    "Summer",
    "Winter",
    "Ocean",
    "Mountain",
    "Highway",
    "City",
    "Garden",
    "Mirror",
    "Shadow",
    "Light",
    "Star",
    "Moon",
    "Sun",
    "Sky",
    "Storm",
    "Thunder",
    "Wave",
    "Island",
    "Desert",
    "Forest",
    "Valley",
    "Train",
    "Radio",
    "Letter",
    "Window",
    "Door",
    "Bridge",
    "Tower",
    "Crown",
    "Ghost",
    "Angel",
    "Devil",
    "Stranger",
    "Lover",
    "Friend",
    "Child",
    "Queen",
    "King",
    "Soldier",
    "Sailor",
    "Wolf",
    "Fox",
    "Raven",
    "Sparrow",
    "Tiger",
    "Horse",
    "Snake",
    "Rose",
    "Lily",
    "Willow",
    "Diamond",
    "Pearl",
    "Gold",
    "Smoke",
    "Ashes",
    "Dust",
    "Echo",
    "Silence",
    "Thunderbird",
    "Satellite",
    "Machine",
    "Engine",
    "Parade",
    "Carnival",
    "Circus",
    "Harbor",
    "Lighthouse",
    "Canyon",
    "Prairie",
    "Meadow",
    "Avenue",
    "Boulevard",
    "Motel",
    "Diner",
    "Jukebox",
];

const PLURALS: &[&str] = &[
    "Wolves",
    "Foxes",
    "Ravens",
    "Sparrows",
    "Tigers",
    "Horses",
    "Roses",
    "Lilies",
    "Ghosts",
    "Angels",
    "Strangers",
    "Lovers",
    "Kings",
    "Queens",
    "Sailors",
    "Soldiers",
    "Machines",
    "Satellites",
    "Echoes",
    "Shadows",
    "Stars",
    "Mirrors",
    "Diamonds",
    "Pearls",
    "Bridges",
    "Rivers",
    "Mountains",
    "Highways",
    "Gardens",
    "Storms",
    "Waves",
    "Islands",
    "Daydreams",
    "Heartbeats",
    "Outlaws",
    "Drifters",
    "Dreamers",
    "Believers",
    "Wanderers",
    "Runaways",
];

const VERBS: &[&str] = &[
    "Dancing", "Running", "Waiting", "Falling", "Dreaming", "Driving", "Walking", "Flying",
    "Burning", "Fading", "Holding", "Chasing", "Calling", "Singing", "Crying", "Breaking",
];

const PREPOSITIONS: &[&str] = &[
    "in", "on", "under", "over", "through", "across", "beyond", "with", "without", "after",
];

const FIRST_NAMES: &[&str] = &[
    "Johnny", "Billie", "Frankie", "Ella", "Nina", "Otis", "Etta", "Ray", "Aretha", "Marvin",
    "Patsy", "Hank", "Dolly", "Willie", "Stevie", "Janis", "Jimi", "Lou", "Joni", "Carole",
    "Buddy", "Chet", "Dusty", "Gram", "Emmylou", "Townes", "Lucinda", "Bonnie", "Tom", "Iris",
];

const LAST_NAMES: &[&str] = &[
    "Carter",
    "Walker",
    "Hayes",
    "Monroe",
    "Reed",
    "Fontaine",
    "Calloway",
    "Holloway",
    "Sinclair",
    "Whitfield",
    "Delgado",
    "Navarro",
    "Okafor",
    "Lindqvist",
    "Marsh",
    "Bishop",
    "Harlow",
    "Vance",
    "Rivers",
    "Sterling",
    "Booker",
    "Dalton",
    "Everly",
    "Fairweather",
    "Greene",
    "Jett",
    "Keller",
    "Lowe",
    "Morrow",
    "Pryce",
];

fn artist_name(rng: &mut Rng) -> String {
    match rng.below(9) {
        0 | 1 => format!("The {} {}", rng.pick(ADJECTIVES), rng.pick(PLURALS)),
        2 => format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
        3 => format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)),
        4 => format!("{} & the {}", rng.pick(FIRST_NAMES), rng.pick(PLURALS)),
        5 => format!("DJ {}", rng.pick(NOUNS)),
        6 => format!("{} of {}", rng.pick(PLURALS), rng.pick(NOUNS)),
        7 => format!("{} {}", rng.pick(NOUNS), rng.pick(PLURALS)),
        _ => format!(
            "{} {} {}",
            rng.pick(FIRST_NAMES),
            rng.pick(LAST_NAMES),
            [
                "Band",
                "Trio",
                "Quartet",
                "Orchestra",
                "Project",
                "Collective"
            ][rng.below(6)]
        ),
    }
}

fn song_title(rng: &mut Rng) -> String {
    let title = match rng.below(10) {
        0 => rng.pick(NOUNS).to_string(),
        1 | 2 => format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)),
        3 => format!(
            "{} {} the {}",
            rng.pick(VERBS),
            rng.pick(PREPOSITIONS),
            rng.pick(NOUNS)
        ),
        4 => format!("{} of the {}", rng.pick(NOUNS), rng.pick(NOUNS)),
        5 => format!("{} {}", rng.pick(VERBS), rng.pick(PLURALS)),
        6 => format!("My {} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS)),
        7 => format!("{} {} Me", rng.pick(VERBS), rng.pick(PREPOSITIONS)),
        8 => {
            format!("{} {}", rng.pick(PLURALS), rng.pick(PREPOSITIONS))
                + &format!(" the {}", rng.pick(NOUNS))
        }
        _ => format!("Don't Call It {}", rng.pick(NOUNS)),
    };
    // Now and then a version, as in any real catalogue.
    match rng.below(20) {
        0 => format!("{title} (Live)"),
        1 => format!("{title} (Remastered)"),
        2 => format!("{title} (Acoustic)"),
        _ => title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_depends_on_its_size_only() {
        let a = Catalogue::generate(2_000);
        let b = Catalogue::generate(2_000);
        assert_eq!(a.songs(), b.songs());
        assert_eq!(a.songs().len(), 2_000);
        let pairs: HashSet<(&str, &str)> =
            a.songs().iter().map(|s| (&*s.artist, &*s.title)).collect();
        assert_eq!(pairs.len(), 2_000, "(artist, title) is unique");
        assert!(
            a.songs()
                .iter()
                .all(|s| (45.0..=1200.0).contains(&s.duration))
        );
    }

    #[test]
    fn popularity_is_long_tailed() {
        let c = Catalogue::generate(DEFAULT_SONGS);
        let mut p: Vec<f64> = (0..c.songs().len()).map(|i| c.popularity(i)).collect();
        p.sort_by(|a, b| b.total_cmp(a));
        let top_1_percent: f64 = p[..p.len() / 100].iter().sum();
        let bottom_half: f64 = p[p.len() / 2..].iter().sum();
        assert!(top_1_percent > 0.25, "top 1%: {top_1_percent}");
        assert!(bottom_half < 0.15, "bottom half: {bottom_half}");
    }

    #[test]
    fn the_next_song_is_sometimes_by_the_same_artist() {
        let c = Catalogue::generate(5_000);
        let mut rng = Rng::new(9);
        let mut same = 0;
        for _ in 0..10_000 {
            let a = c.next_song(&mut rng, None);
            let b = c.next_song(&mut rng, Some(a));
            if c.song(a).artist == c.song(b).artist {
                same += 1;
            }
        }
        let share = same as f64 / 10_000.0;
        assert!((0.2..0.4).contains(&share), "{share}");
    }
}

//! The site: its pages, the auth and level a visitor can have, and the page transition state
//! machine, as eventsim's JSON config describes them (`new-session`, `transitions`,
//! `show-user-details`, `churned-state`).
//!
//! A state is (page, auth, level); a page fixes its HTTP method and status. From each state a
//! visitor moves to another with the transition's probability; what the probabilities leave
//! below 1 ends the session. Auth and level change only along a few transitions: `Submit
//! Registration` (a guest becomes `Logged In`), `Login` (to `Logged In`, unless it fails),
//! `Logout` (to `Logged Out`), `Submit Upgrade` (to `paid`), `Submit Downgrade` (to `free`)
//! and `Cancel` (to `Cancelled`, eventsim's churned state, which ends the user).
//!
//! The table follows eventsim's `examples/example-config.json` (the config the seeds' Kafka
//! fork runs), with the pages of eventsim's later music configs added (`Thumbs Up`,
//! `Thumbs Down`, `Add to Playlist`, `Add Friend`, and `Roll Advert` for free users), and
//! these changes: cancelling is more likely (0.03 from `Settings` instead of 0.005, and 0.01
//! from `Downgrade`), so that a month shows the churn of a subscription service (a few
//! percent) rather than almost none; a login fails 1% of the time instead of 0.1%, so that
//! failed logins show in a day of data; and a submitted upgrade, downgrade or registration
//! always goes through (the example config sends 0.1% of them to an error page, which would
//! record a status change that did not happen).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::rng::{Rng, Weighted};

/// A page of the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Page {
    About,
    Help,
    Home,
    Register,
    #[serde(rename = "Submit Registration")]
    SubmitRegistration,
    Login,
    Logout,
    NextSong,
    Settings,
    #[serde(rename = "Save Settings")]
    SaveSettings,
    Upgrade,
    #[serde(rename = "Submit Upgrade")]
    SubmitUpgrade,
    Downgrade,
    #[serde(rename = "Submit Downgrade")]
    SubmitDowngrade,
    Cancel,
    #[serde(rename = "Cancellation Confirmation")]
    CancellationConfirmation,
    Error,
    #[serde(rename = "Thumbs Up")]
    ThumbsUp,
    #[serde(rename = "Thumbs Down")]
    ThumbsDown,
    #[serde(rename = "Add to Playlist")]
    AddToPlaylist,
    #[serde(rename = "Add Friend")]
    AddFriend,
    #[serde(rename = "Roll Advert")]
    RollAdvert,
}

impl Page {
    pub const ALL: [Page; 22] = [
        Page::About,
        Page::Help,
        Page::Home,
        Page::Register,
        Page::SubmitRegistration,
        Page::Login,
        Page::Logout,
        Page::NextSong,
        Page::Settings,
        Page::SaveSettings,
        Page::Upgrade,
        Page::SubmitUpgrade,
        Page::Downgrade,
        Page::SubmitDowngrade,
        Page::Cancel,
        Page::CancellationConfirmation,
        Page::Error,
        Page::ThumbsUp,
        Page::ThumbsDown,
        Page::AddToPlaylist,
        Page::AddFriend,
        Page::RollAdvert,
    ];

    /// The name eventsim writes in `page`.
    pub fn name(self) -> &'static str {
        match self {
            Page::About => "About",
            Page::Help => "Help",
            Page::Home => "Home",
            Page::Register => "Register",
            Page::SubmitRegistration => "Submit Registration",
            Page::Login => "Login",
            Page::Logout => "Logout",
            Page::NextSong => "NextSong",
            Page::Settings => "Settings",
            Page::SaveSettings => "Save Settings",
            Page::Upgrade => "Upgrade",
            Page::SubmitUpgrade => "Submit Upgrade",
            Page::Downgrade => "Downgrade",
            Page::SubmitDowngrade => "Submit Downgrade",
            Page::Cancel => "Cancel",
            Page::CancellationConfirmation => "Cancellation Confirmation",
            Page::Error => "Error",
            Page::ThumbsUp => "Thumbs Up",
            Page::ThumbsDown => "Thumbs Down",
            Page::AddToPlaylist => "Add to Playlist",
            Page::AddFriend => "Add Friend",
            Page::RollAdvert => "Roll Advert",
        }
    }

    /// The HTTP method of a request for this page.
    pub fn method(self) -> Method {
        match self {
            Page::SubmitRegistration
            | Page::Login
            | Page::Logout
            | Page::NextSong
            | Page::SaveSettings
            | Page::SubmitUpgrade
            | Page::SubmitDowngrade
            | Page::Cancel
            | Page::ThumbsUp
            | Page::ThumbsDown
            | Page::AddToPlaylist
            | Page::AddFriend => Method::Put,
            _ => Method::Get,
        }
    }

    /// The HTTP status of the response: 307 for the actions that redirect, 404 for `Error`.
    pub fn status(self) -> u16 {
        match self {
            Page::Error => 404,
            Page::SubmitRegistration
            | Page::Login
            | Page::Logout
            | Page::SaveSettings
            | Page::SubmitUpgrade
            | Page::SubmitDowngrade
            | Page::Cancel
            | Page::ThumbsUp
            | Page::ThumbsDown
            | Page::AddFriend => 307,
            _ => 200,
        }
    }
}

impl std::fmt::Display for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// HTTP method, as eventsim writes it (`GET`, `PUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "PUT")]
    Put,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
        }
    }
}

/// Whether and how a visitor is known to the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Auth {
    /// Not registered yet.
    Guest,
    #[serde(rename = "Logged In")]
    LoggedIn,
    #[serde(rename = "Logged Out")]
    LoggedOut,
    /// Cancelled the subscription: eventsim's churned state; the user's last event.
    Cancelled,
}

impl Auth {
    /// eventsim's `show-user-details`: whether events carry the user's fields (`userId`,
    /// names, gender, registration). Guests and logged-out visitors are anonymous.
    pub fn shows_user(self) -> bool {
        matches!(self, Auth::LoggedIn | Auth::Cancelled)
    }

    pub fn name(self) -> &'static str {
        match self {
            Auth::Guest => "Guest",
            Auth::LoggedIn => "Logged In",
            Auth::LoggedOut => "Logged Out",
            Auth::Cancelled => "Cancelled",
        }
    }
}

/// Subscription level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Free,
    Paid,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Free => "free",
            Level::Paid => "paid",
        }
    }
}

/// A state of the machine: the page a visitor is on, with their auth and level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub page: Page,
    pub auth: Auth,
    pub level: Level,
}

impl State {
    fn new(page: Page, auth: Auth, level: Level) -> State {
        State { page, auth, level }
    }
}

/// Index of a state in [`Site::states`].
pub(crate) type StateId = usize;

/// The state machine: states, their transitions and the first states of sessions.
#[derive(Debug)]
pub struct Site {
    states: Vec<State>,
    index: HashMap<State, StateId>,
    /// Per state: (cumulative upper bound of the probability, destination).
    transitions: Vec<Vec<(f64, StateId)>>,
    /// Per (auth, level): the first pages of a session and their weights.
    initial: HashMap<(Auth, Level), (Vec<StateId>, Weighted)>,
}

/// Where a transition goes: a page with the source's auth and level, or a page with its own.
#[derive(Clone, Copy)]
enum To {
    Same(Page),
    As(Page, Auth, Level),
}

use Auth::{Cancelled, Guest, LoggedIn, LoggedOut};
use Level::{Free, Paid};
use Page::*;
use To::{As, Same};

/// The transitions of one auth and level: (source page, [(destination, probability)]).
type Rows = &'static [(Page, &'static [(To, f64)])];

const GUEST: Rows = &[
    (
        About,
        &[
            (Same(About), 0.05),
            (Same(Help), 0.05),
            (Same(Home), 0.3),
            (Same(Register), 0.1),
            (Same(Error), 0.001),
        ],
    ),
    (
        Help,
        &[
            (Same(About), 0.0025),
            (Same(Help), 0.1),
            (Same(Home), 0.2),
            (Same(Register), 0.03),
            (Same(Error), 0.001),
        ],
    ),
    (
        Home,
        &[
            (Same(About), 0.1),
            (Same(Help), 0.05),
            (Same(Home), 0.1),
            (Same(Register), 0.3),
            (Same(Error), 0.001),
        ],
    ),
    (
        Register,
        &[
            (Same(About), 0.01),
            (Same(Help), 0.02),
            (Same(Home), 0.1),
            (Same(Register), 0.05),
            (As(SubmitRegistration, LoggedIn, Free), 0.7),
            (Same(Error), 0.001),
        ],
    ),
    (
        Error,
        &[
            (Same(About), 0.01),
            (Same(Help), 0.05),
            (Same(Home), 0.5),
            (Same(Error), 0.1),
        ],
    ),
];

/// Logged in, free and paid alike: the pages around songs.
const SONG_ACTIONS: Rows = &[
    (
        ThumbsUp,
        &[
            (Same(NextSong), 0.8),
            (Same(AddToPlaylist), 0.02),
            (Same(Home), 0.05),
        ],
    ),
    (
        ThumbsDown,
        &[
            (Same(NextSong), 0.75),
            (Same(Help), 0.005),
            (Same(Home), 0.05),
        ],
    ),
    (AddToPlaylist, &[(Same(NextSong), 0.8), (Same(Home), 0.05)]),
    (
        AddFriend,
        &[
            (Same(NextSong), 0.6),
            (Same(AddFriend), 0.05),
            (Same(Home), 0.15),
        ],
    ),
];

const LOGGED_IN_FREE: Rows = &[
    (SubmitRegistration, &[(As(Home, LoggedIn, Free), 1.0)]),
    (
        About,
        &[
            (Same(About), 0.05),
            (Same(Help), 0.01),
            (Same(Home), 0.2),
            (Same(Settings), 0.01),
            (Same(NextSong), 0.3),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Help,
        &[
            (Same(About), 0.002),
            (Same(Help), 0.1),
            (Same(Home), 0.2),
            (Same(Settings), 0.05),
            (Same(Upgrade), 0.01),
            (Same(NextSong), 0.32),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Home,
        &[
            (Same(About), 0.002),
            (Same(Help), 0.002),
            (Same(Home), 0.01),
            (Same(Settings), 0.02),
            (Same(Upgrade), 0.01),
            (Same(NextSong), 0.6),
            (Same(RollAdvert), 0.02),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Settings,
        &[
            (Same(About), 0.002),
            (Same(Help), 0.05),
            (Same(Home), 0.1),
            (Same(Settings), 0.1),
            (Same(Upgrade), 0.01),
            (Same(NextSong), 0.3),
            (Same(Cancel), 0.03),
            (Same(Logout), 0.01),
            (Same(SaveSettings), 0.2),
            (Same(Error), 0.001),
        ],
    ),
    (
        Upgrade,
        &[
            (Same(About), 0.002),
            (Same(Help), 0.006),
            (Same(Home), 0.1),
            (Same(Upgrade), 0.07),
            (Same(NextSong), 0.325),
            (Same(Logout), 0.01),
            (Same(SubmitUpgrade), 0.3),
            (Same(Error), 0.001),
        ],
    ),
    (
        NextSong,
        &[
            (Same(About), 0.002),
            (Same(Help), 0.005),
            (Same(Home), 0.02),
            (Same(Settings), 0.005),
            (Same(Upgrade), 0.01),
            (Same(NextSong), 0.45),
            (Same(ThumbsUp), 0.03),
            (Same(ThumbsDown), 0.01),
            (Same(AddToPlaylist), 0.015),
            (Same(AddFriend), 0.005),
            (Same(RollAdvert), 0.05),
            (Same(Logout), 0.02),
            (Same(Error), 0.001),
        ],
    ),
    (
        RollAdvert,
        &[
            (Same(NextSong), 0.6),
            (Same(RollAdvert), 0.05),
            (Same(Upgrade), 0.03),
            (Same(Home), 0.1),
        ],
    ),
    (
        Cancel,
        &[
            (As(CancellationConfirmation, Cancelled, Free), 0.999),
            (Same(Error), 0.001),
        ],
    ),
    (Logout, &[(As(Home, LoggedOut, Free), 1.0)]),
    (
        SaveSettings,
        &[
            (Same(Home), 0.65),
            (Same(Settings), 0.1),
            (Same(Error), 0.001),
        ],
    ),
    (SubmitUpgrade, &[(As(Home, LoggedIn, Paid), 1.0)]),
    (
        Error,
        &[
            (Same(About), 0.001),
            (Same(Help), 0.002),
            (Same(Home), 0.1),
            (Same(NextSong), 0.3),
            (Same(Logout), 0.01),
            (Same(Error), 0.01),
        ],
    ),
];

const LOGGED_IN_PAID: Rows = &[
    (
        About,
        &[
            (Same(About), 0.05),
            (Same(Help), 0.01),
            (Same(Home), 0.2),
            (Same(Settings), 0.01),
            (Same(NextSong), 0.4),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Downgrade,
        &[
            (Same(About), 0.002),
            (Same(Downgrade), 0.07),
            (Same(Help), 0.006),
            (Same(Home), 0.1),
            (Same(NextSong), 0.63),
            (Same(Logout), 0.01),
            (Same(SubmitDowngrade), 0.01),
            (Same(Cancel), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Help,
        &[
            (Same(About), 0.002),
            (Same(Downgrade), 0.01),
            (Same(Help), 0.05),
            (Same(Home), 0.1),
            (Same(Settings), 0.02),
            (Same(NextSong), 0.75),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Home,
        &[
            (Same(About), 0.002),
            (Same(Downgrade), 0.01),
            (Same(Help), 0.002),
            (Same(Home), 0.01),
            (Same(Settings), 0.02),
            (Same(NextSong), 0.85),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Settings,
        &[
            (Same(About), 0.002),
            (Same(Downgrade), 0.01),
            (Same(Help), 0.05),
            (Same(Home), 0.05),
            (Same(Settings), 0.05),
            (Same(NextSong), 0.575),
            (Same(Cancel), 0.03),
            (Same(Logout), 0.01),
            (Same(SaveSettings), 0.2),
            (Same(Error), 0.001),
        ],
    ),
    (
        NextSong,
        &[
            (Same(About), 0.002),
            (Same(Downgrade), 0.01),
            (Same(Help), 0.005),
            (Same(Home), 0.02),
            (Same(Settings), 0.005),
            (Same(NextSong), 0.87),
            (Same(ThumbsUp), 0.03),
            (Same(ThumbsDown), 0.008),
            (Same(AddToPlaylist), 0.015),
            (Same(AddFriend), 0.005),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
    (
        Cancel,
        &[
            (As(CancellationConfirmation, Cancelled, Paid), 0.999),
            (Same(Error), 0.001),
        ],
    ),
    (Logout, &[(As(Home, LoggedOut, Paid), 1.0)]),
    (
        SaveSettings,
        &[
            (Same(Home), 0.8),
            (Same(Settings), 0.1),
            (Same(Error), 0.001),
        ],
    ),
    (SubmitDowngrade, &[(As(Home, LoggedIn, Free), 1.0)]),
    (
        Error,
        &[
            (Same(About), 0.001),
            (Same(Help), 0.01),
            (Same(Home), 0.1),
            (Same(NextSong), 0.2),
            (Same(Logout), 0.01),
            (Same(Error), 0.001),
        ],
    ),
];

/// Logged out, free and paid alike: the way back in is `Login`, which fails now and then
/// (an auth event with `success: false`).
const LOGGED_OUT: Rows = &[
    (
        About,
        &[
            (Same(About), 0.05),
            (Same(Help), 0.025),
            (Same(Home), 0.3),
            (Same(Login), 0.4),
            (Same(Error), 0.001),
        ],
    ),
    (
        Help,
        &[
            (Same(About), 0.0025),
            (Same(Help), 0.1),
            (Same(Home), 0.3),
            (Same(Login), 0.5),
            (Same(Error), 0.001),
        ],
    ),
    (
        Home,
        &[
            (Same(About), 0.1),
            (Same(Help), 0.05),
            (Same(Home), 0.1),
            (Same(Login), 0.5),
            (Same(Error), 0.001),
        ],
    ),
    (
        Error,
        &[
            (Same(About), 0.01),
            (Same(Help), 0.05),
            (Same(Home), 0.5),
            (Same(Login), 0.1),
            (Same(Error), 0.01),
        ],
    ),
];

/// The first page of a session, by the visitor's auth and level (eventsim's `new-session`).
type FirstPages = &'static [(Page, f64)];

const NEW_SESSION: &[(Auth, Level, FirstPages)] = &[
    (
        Guest,
        Free,
        &[
            (About, 20.0),
            (Help, 10.0),
            (Home, 100.0),
            (Register, 30.0),
            (Error, 5.0),
        ],
    ),
    (
        LoggedIn,
        Free,
        &[
            (About, 5.0),
            (Help, 10.0),
            (Home, 1000.0),
            (NextSong, 1500.0),
            (Error, 1.0),
        ],
    ),
    (
        LoggedOut,
        Free,
        &[
            (About, 10.0),
            (Help, 10.0),
            (Home, 1000.0),
            (Login, 500.0),
            (Error, 1.0),
        ],
    ),
    (
        LoggedIn,
        Paid,
        &[
            (About, 5.0),
            (Help, 5.0),
            (Home, 1000.0),
            (NextSong, 1750.0),
            (Error, 1.0),
        ],
    ),
    (
        LoggedOut,
        Paid,
        &[
            (About, 10.0),
            (Help, 10.0),
            (Home, 1000.0),
            (Login, 500.0),
            (Error, 1.0),
        ],
    ),
];

/// How often a login fails: the rest of `Login`'s probability goes to `Home`, logged in.
const LOGIN_FAILURE: f64 = 0.01;

impl Site {
    /// The site eventsim's example config describes (see the module's documentation).
    pub fn standard() -> Site {
        let mut site = Site {
            states: Vec::new(),
            index: HashMap::new(),
            transitions: Vec::new(),
            initial: HashMap::new(),
        };
        let tables: [(Auth, Level, Rows); 7] = [
            (Guest, Free, GUEST),
            (LoggedIn, Free, LOGGED_IN_FREE),
            (LoggedIn, Free, SONG_ACTIONS),
            (LoggedIn, Paid, LOGGED_IN_PAID),
            (LoggedIn, Paid, SONG_ACTIONS),
            (LoggedOut, Free, LOGGED_OUT),
            (LoggedOut, Paid, LOGGED_OUT),
        ];
        for (auth, level, rows) in tables {
            for &(page, dests) in rows {
                let from = State::new(page, auth, level);
                for &(to, p) in dests {
                    let to = match to {
                        Same(page) => State::new(page, auth, level),
                        As(page, auth, level) => State::new(page, auth, level),
                    };
                    site.add_transition(from, to, p);
                }
            }
        }
        for level in [Free, Paid] {
            let login = State::new(Login, LoggedOut, level);
            site.add_transition(
                login,
                State::new(Home, LoggedIn, level),
                1.0 - LOGIN_FAILURE,
            );
            site.add_transition(login, State::new(Error, LoggedOut, level), LOGIN_FAILURE);
        }
        for &(auth, level, pages) in NEW_SESSION {
            let ids: Vec<StateId> = pages
                .iter()
                .map(|&(page, _)| site.id(State::new(page, auth, level)))
                .collect();
            let weights = Weighted::new(pages.iter().map(|&(_, w)| w));
            site.initial.insert((auth, level), (ids, weights));
        }
        site
    }

    fn id(&mut self, state: State) -> StateId {
        if let Some(&id) = self.index.get(&state) {
            return id;
        }
        let id = self.states.len();
        self.states.push(state);
        self.index.insert(state, id);
        self.transitions.push(Vec::new());
        id
    }

    fn add_transition(&mut self, from: State, to: State, p: f64) {
        let from = self.id(from);
        let to = self.id(to);
        let row = &mut self.transitions[from];
        let low = row.last().map_or(0.0, |&(high, _)| high);
        assert!(
            low + p <= 1.0 + 1e-9,
            "transitions from {:?} add up to more than 1",
            self.states[from]
        );
        row.push((low + p, to));
    }

    pub(crate) fn state(&self, id: StateId) -> State {
        self.states[id]
    }

    /// Every state of the machine.
    pub fn states(&self) -> &[State] {
        &self.states
    }

    /// The transitions from a state, with their probabilities.
    pub fn transitions_from(&self, state: State) -> Vec<(State, f64)> {
        let Some(&id) = self.index.get(&state) else {
            return Vec::new();
        };
        let mut low = 0.0;
        self.transitions[id]
            .iter()
            .map(|&(high, to)| {
                let p = high - low;
                low = high;
                (self.states[to], p)
            })
            .collect()
    }

    /// The next state, or `None` when the session ends (eventsim's `State.nextState`).
    pub(crate) fn next(&self, from: StateId, rng: &mut Rng) -> Option<StateId> {
        let x = rng.f64();
        self.transitions[from]
            .iter()
            .find(|&&(high, _)| x < high)
            .map(|&(_, to)| to)
    }

    /// The first state of a session for a visitor with this auth and level; `None` for a
    /// cancelled user, who has no more sessions.
    pub(crate) fn first(&self, auth: Auth, level: Level, rng: &mut Rng) -> Option<StateId> {
        let (ids, weights) = self.initial.get(&(auth, level))?;
        Some(ids[weights.sample(rng)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_but_the_cancellation_leads_somewhere_and_no_row_exceeds_one() {
        let site = Site::standard();
        for &state in site.states() {
            let out = site.transitions_from(state);
            let total: f64 = out.iter().map(|(_, p)| p).sum();
            assert!(total <= 1.0 + 1e-9, "{state:?}: {total}");
            if state.page == CancellationConfirmation {
                assert!(out.is_empty(), "{state:?}");
                assert_eq!(state.auth, Cancelled);
            } else {
                assert!(total > 0.3, "{state:?} ends sessions too often: {total}");
            }
        }
    }

    #[test]
    fn auth_and_level_change_only_through_their_pages() {
        let site = Site::standard();
        for &from in site.states() {
            for (to, _) in site.transitions_from(from) {
                if to.level != from.level {
                    assert!(
                        matches!(from.page, SubmitUpgrade | SubmitDowngrade),
                        "{from:?} -> {to:?}"
                    );
                }
                if to.auth != from.auth {
                    let allowed = match (from.auth, to.auth) {
                        (Guest, LoggedIn) => to.page == SubmitRegistration,
                        (LoggedOut, LoggedIn) => from.page == Login,
                        (LoggedIn, LoggedOut) => from.page == Logout,
                        (LoggedIn, Cancelled) => from.page == Cancel,
                        _ => false,
                    };
                    assert!(allowed, "{from:?} -> {to:?}");
                }
                if matches!(from.page, SubmitUpgrade | SubmitDowngrade) {
                    assert_ne!(to.level, from.level, "a submitted change always happens");
                }
            }
        }
    }

    #[test]
    fn pages_have_eventsims_methods_and_statuses() {
        assert_eq!((NextSong.method(), NextSong.status()), (Method::Put, 200));
        assert_eq!((Login.method(), Login.status()), (Method::Put, 307));
        assert_eq!((Error.method(), Error.status()), (Method::Get, 404));
        assert_eq!((Home.method(), Home.status()), (Method::Get, 200));
        for page in Page::ALL {
            let json = serde_json::to_string(&page).expect("page");
            assert_eq!(json, format!("\"{}\"", page.name()));
        }
        assert_eq!(
            serde_json::to_string(&LoggedIn).expect("auth"),
            "\"Logged In\""
        );
        assert_eq!(serde_json::to_string(&Paid).expect("level"), "\"paid\"");
    }

    #[test]
    fn sessions_start_only_for_visitors_who_have_sessions() {
        let site = Site::standard();
        let mut rng = Rng::new(1);
        for (auth, level) in [
            (Guest, Free),
            (LoggedIn, Free),
            (LoggedIn, Paid),
            (LoggedOut, Free),
            (LoggedOut, Paid),
        ] {
            let first = site.first(auth, level, &mut rng).expect("first page");
            let state = site.state(first);
            assert_eq!((state.auth, state.level), (auth, level));
        }
        assert!(site.first(Cancelled, Free, &mut rng).is_none());
    }
}

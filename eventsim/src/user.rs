//! A simulated user and their sessions: eventsim's `User` and `Session`.
//!
//! Each user draws from a random stream of their own, seeded from the run and their index,
//! so that a user's life does not depend on anyone else's, nor on where the run ends.

use crate::catalogue::Catalogue;
use crate::config::SiteParams;
use crate::rng::{Rng, Weighted};
use crate::site::{Auth, Level, Page, Site, StateId};
use crate::tables::{Gender, TABLES};

const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;

/// What every user shares: the site, the songs and the parameters.
pub(crate) struct World {
    pub(crate) site: Site,
    pub(crate) catalogue: Catalogue,
    pub(crate) params: SiteParams,
    levels: Weighted,
    auths: Weighted,
}

impl World {
    pub(crate) fn new(params: SiteParams, songs: usize) -> World {
        World {
            site: Site::standard(),
            catalogue: Catalogue::generate(songs),
            levels: Weighted::new(params.level_weights),
            auths: Weighted::new(params.auth_weights),
            params,
        }
    }
}

/// A session in progress: where the user is and when their next request comes.
#[derive(Debug)]
pub(crate) struct Session {
    /// The user's sessions are numbered from 0.
    pub(crate) seq: u32,
    /// The run's session id, given when the session's first event is written.
    pub(crate) id: Option<u64>,
    /// When the current state's request happens, epoch milliseconds.
    pub(crate) ts: i64,
    pub(crate) item: u32,
    pub(crate) state: StateId,
    pub(crate) previous: Option<StateId>,
    /// The song playing (or last played) in this session, and when it ends.
    pub(crate) song: Option<usize>,
    song_end: i64,
}

pub(crate) struct User {
    pub(crate) index: u32,
    /// Mean seconds between requests, and between sessions.
    alpha: f64,
    beta: f64,
    /// The chance of leaving after a session (attrition).
    churn: f64,
    rng: Rng,
    pub(crate) first_name: usize,
    pub(crate) last_name: usize,
    pub(crate) gender: Gender,
    /// Epoch milliseconds.
    pub(crate) registration: i64,
    pub(crate) city: usize,
    pub(crate) user_agent: usize,
    pub(crate) session: Session,
}

/// How a user comes into the run.
pub(crate) enum Arrival {
    /// Already a user when the run starts at this time (ms): simulated from before it.
    Initial { start: i64 },
    /// A new visitor (a guest) whose first visit is at this time (ms).
    New { at: i64 },
}

impl User {
    pub(crate) fn new(
        world: &World,
        index: u32,
        seed: u64,
        arrival: Arrival,
        attrition_rate: f64,
    ) -> User {
        let mut rng = Rng::new(seed);
        let params = &world.params;
        let alpha = params.alpha * rng.log_normal_mean_one();
        let beta = params.beta * rng.log_normal_mean_one();
        let churn = (attrition_rate * (beta + params.session_gap) / SECONDS_PER_YEAR).min(1.0);
        let tables = &*TABLES;
        let first_name = tables.first_name_weights.sample(&mut rng);
        let gender = tables.first_names[first_name].1;
        let last_name = tables.last_name_weights.sample(&mut rng);
        let city = tables.city_weights.sample(&mut rng);
        let user_agent = tables.user_agent_weights.sample(&mut rng);
        let mut user = User {
            index,
            alpha,
            beta,
            churn,
            rng,
            first_name,
            last_name,
            gender,
            registration: 0,
            city,
            user_agent,
            session: Session {
                seq: 0,
                id: None,
                ts: 0,
                item: 0,
                state: 0,
                previous: None,
                song: None,
                song_end: 0,
            },
        };
        let (ts, auth, level) = match arrival {
            Arrival::Initial { start } => {
                let level = [Level::Free, Level::Paid][world.levels.sample(&mut user.rng)];
                let auth = [Auth::Guest, Auth::LoggedIn, Auth::LoggedOut]
                    [world.auths.sample(&mut user.rng)];
                // Registered up to five years before the start, a year before on average.
                let age = user
                    .rng
                    .exponential(SECONDS_PER_YEAR)
                    .min(5.0 * SECONDS_PER_YEAR);
                user.registration = start - (age as i64) * 1000;
                (user.first_session_start(world, start), auth, level)
            }
            Arrival::New { at } => {
                user.registration = at;
                (at, Auth::Guest, Level::Free)
            }
        };
        user.begin_session(world, 0, ts, auth, level);
        user
    }

    fn timezone(&self) -> chrono_tz::Tz {
        TABLES.cities[self.city].timezone
    }

    /// eventsim's `pickFirstTimeStamp`: start two betas before the run and walk from session
    /// to session until one beta before it, so that the run finds users in their steady
    /// state (some mid-session, most between sessions).
    fn first_session_start(&mut self, world: &World, start: i64) -> i64 {
        let beta_ms = (self.beta * 1000.0) as i64;
        let mut candidate = self.next_session_start(world, start - 2 * beta_ms);
        while candidate < start - beta_ms {
            candidate = self.next_session_start(world, candidate);
        }
        candidate
    }

    /// eventsim's `pickNextSessionStartTime`: an exponential gap (mean beta) plus the session
    /// gap, warped by the daily cycle, and kept or skipped by the weekend damping.
    fn next_session_start(&mut self, world: &World, mut last: i64) -> i64 {
        let params = &world.params;
        let tz = self.timezone();
        let gap_ms = (params.session_gap * 1000.0) as i64;
        loop {
            let gap = self.rng.exponential(self.beta) * 1000.0;
            let next = params.cycle.warp(last + gap as i64 + gap_ms, tz);
            if next < last {
                // The warp moved it back before the last session: force progress.
                last += gap_ms;
                continue;
            }
            let damping = params.cycle.weekend_damping(next, tz);
            if damping <= 0.0 || self.rng.chance(1.0 - damping) {
                return next;
            }
            last = next;
        }
    }

    fn begin_session(&mut self, world: &World, seq: u32, ts: i64, auth: Auth, level: Level) {
        let state = world
            .site
            .first(auth, level, &mut self.rng)
            .expect("a user with sessions has a first page");
        let mut session = Session {
            seq,
            id: None,
            ts,
            item: 0,
            state,
            previous: None,
            song: None,
            song_end: ts,
        };
        if world.site.state(state).page == Page::NextSong {
            let song = world.catalogue.next_song(&mut self.rng, None);
            session.song = Some(song);
            session.song_end = ts + duration_ms(&world.catalogue, song);
        }
        self.session = session;
    }

    /// Moves to the user's next request (eventsim's `User.nextEvent` and
    /// `Session.incrementEvent`): the next page of the session, or the first of the next
    /// session. Returns false when the user is gone: cancelled or worn away by attrition.
    pub(crate) fn advance(&mut self, world: &World) -> bool {
        let site = &world.site;
        let Some(next) = site.next(self.session.state, &mut self.rng) else {
            return self.end_session(world);
        };
        let page = site.state(next).page;
        let s = &mut self.session;
        if (300..400).contains(&page.status()) {
            // A redirect: the next request follows a second later.
            s.ts += 1000;
        } else if page == Page::NextSong {
            match s.song {
                // The song playing goes on until its end.
                Some(_) if s.ts < s.song_end => s.ts = s.song_end,
                _ => s.ts += (self.rng.exponential(self.alpha) * 1000.0) as i64,
            }
            let song = world.catalogue.next_song(&mut self.rng, s.song);
            s.song = Some(song);
            s.song_end = s.ts + duration_ms(&world.catalogue, song);
        } else {
            s.ts += (self.rng.exponential(self.alpha) * 1000.0) as i64;
        }
        s.previous = Some(s.state);
        s.state = next;
        s.item += 1;
        if page == Page::SubmitRegistration {
            self.registration = s.ts;
        }
        true
    }

    fn end_session(&mut self, world: &World) -> bool {
        let state = world.site.state(self.session.state);
        if state.auth == Auth::Cancelled || self.rng.chance(self.churn) {
            return false;
        }
        let start = self.next_session_start(world, self.session.ts);
        let seq = self.session.seq + 1;
        self.begin_session(world, seq, start, state.auth, state.level);
        true
    }
}

fn duration_ms(catalogue: &Catalogue, song: usize) -> i64 {
    (catalogue.song(song).duration * 1000.0) as i64
}

//! The simulation: all users in one priority queue by the time of their next request, and
//! the events each request writes (eventsim's `Main.generateEvents` and `Output`).
//!
//! It reads no clock and does no I/O: an iterator of events in timestamp order. The same
//! configuration gives the same events, however the caller consumes them; and a run that
//! ends later writes the same events up to where the shorter one ended.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::config::{Config, ConfigError};
use crate::event::{
    AuthEvent, Event, EventId, ListenEvent, PageViewEvent, StatusChangeEvent, Topic,
};
use crate::rng::{Rng, hash};
use crate::site::{Auth, Page};
use crate::tables::TABLES;
use crate::user::{Arrival, User, World};

const SECONDS_PER_YEAR: f64 = 365.25 * 86_400.0;
/// Random streams derived from the run's key.
const USER_STREAM: u64 = 1;
const ARRIVAL_STREAM: u64 = 2;
const ID_STREAM: u64 = 3;

/// Generates the events of a configuration, in timestamp order.
pub struct Simulation {
    world: World,
    /// Hash of the seed and the start: the root of every random stream and event id.
    run_key: u64,
    start: i64,
    end: i64,
    first_user_id: u64,
    attrition_rate: f64,
    growth_rate: f64,
    initial_users: u32,
    users: Vec<User>,
    /// (time of the user's next request, user index), earliest first.
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    /// New users' arrivals: their random stream and the next one's time.
    arrivals: Option<(Rng, i64)>,
    next_session_id: u64,
    pending: VecDeque<Event>,
    done: bool,
}

impl Simulation {
    pub fn new(config: &Config) -> Result<Simulation, ConfigError> {
        config.validate()?;
        let start = config.start.timestamp_millis();
        let end = config.end.timestamp_millis();
        let run_key = hash(config.seed, &[start as u64]);
        let world = World::new(config.site.clone(), config.songs);
        let mut sim = Simulation {
            world,
            run_key,
            start,
            end,
            first_user_id: config.first_user_id,
            attrition_rate: config.attrition_rate,
            growth_rate: config.growth_rate,
            initial_users: config.users,
            users: Vec::with_capacity(config.users as usize),
            queue: BinaryHeap::with_capacity(config.users as usize),
            arrivals: None,
            next_session_id: 1,
            pending: VecDeque::new(),
            done: false,
        };
        for _ in 0..config.users {
            sim.add_user(Arrival::Initial { start });
        }
        if config.growth_rate > 0.0 {
            let mut rng = Rng::new(hash(run_key, &[ARRIVAL_STREAM]));
            let at = start + sim.arrival_gap(&mut rng);
            sim.arrivals = Some((rng, at));
        }
        Ok(sim)
    }

    /// Users so far: those at the start and those who arrived since.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Users at the start.
    pub fn initial_users(&self) -> u32 {
        self.initial_users
    }

    /// eventsim's growth: exponential gaps whose mean shrinks as the user base grows.
    fn arrival_gap(&self, rng: &mut Rng) -> i64 {
        let users = self.users.len().max(1) as f64;
        let mean = SECONDS_PER_YEAR / (users * self.growth_rate);
        (rng.exponential(mean) * 1000.0) as i64
    }

    fn add_user(&mut self, arrival: Arrival) {
        let index = self.users.len() as u32;
        let seed = hash(self.run_key, &[USER_STREAM, u64::from(index)]);
        let user = User::new(&self.world, index, seed, arrival, self.attrition_rate);
        self.queue.push(Reverse((user.session.ts, index)));
        self.users.push(user);
    }

    /// Admits the next new user if they arrive before the next request of anyone else.
    fn admit_arrival(&mut self) -> bool {
        let Some((_, at)) = self.arrivals else {
            return false;
        };
        let next_request = self.queue.peek().map(|r| r.0.0);
        if at >= self.end || next_request.is_some_and(|t| t < at) {
            return false;
        }
        self.add_user(Arrival::New { at });
        if let Some((mut rng, _)) = self.arrivals.take() {
            let next = at + self.arrival_gap(&mut rng);
            self.arrivals = Some((rng, next));
        }
        true
    }

    /// The events of a user's current request (eventsim's `Output.writeEvents`).
    fn write_events(&mut self, index: usize) {
        let session_id = match self.users[index].session.id {
            Some(id) => id,
            None => {
                let id = self.next_session_id;
                self.next_session_id += 1;
                self.users[index].session.id = Some(id);
                id
            }
        };
        let user = &self.users[index];
        let run_key = self.run_key;
        let id = |topic| event_id(run_key, user, topic);
        let world = &self.world;
        let s = &user.session;
        let state = world.site.state(s.state);
        let tables = &*TABLES;
        let city = &tables.cities[user.city];
        let shows = state.auth.shows_user();
        let user_id = shows.then(|| self.first_user_id + u64::from(user.index));
        let first_name = shows.then(|| tables.first_names[user.first_name].0.clone());
        let last_name = shows.then(|| tables.last_names[user.last_name].clone());
        let gender = shows.then_some(user.gender);
        let registration = shows.then_some(user.registration);
        let user_agent = tables.user_agents[user.user_agent].clone();
        let song = match (state.page, s.song) {
            (Page::NextSong, Some(song)) => Some(world.catalogue.song(song)),
            _ => None,
        };

        if let Some(song) = song {
            self.pending.push_back(Event::Listen(ListenEvent {
                artist: song.artist.clone(),
                song: song.title.clone(),
                duration: song.duration,
                ts: s.ts,
                session_id,
                auth: state.auth,
                level: state.level,
                item_in_session: s.item,
                city: city.city.clone(),
                zip: city.zip.clone(),
                state: city.state.clone(),
                user_agent: user_agent.clone(),
                lon: city.lon,
                lat: city.lat,
                user_id,
                last_name: last_name.clone(),
                first_name: first_name.clone(),
                gender,
                registration,
                event_id: id(Topic::ListenEvents),
            }));
        }
        if matches!(
            state.page,
            Page::SubmitUpgrade | Page::SubmitDowngrade | Page::CancellationConfirmation
        ) {
            self.pending
                .push_back(Event::StatusChange(StatusChangeEvent {
                    ts: s.ts,
                    session_id,
                    auth: state.auth,
                    level: state.level,
                    item_in_session: s.item,
                    city: city.city.clone(),
                    zip: city.zip.clone(),
                    state: city.state.clone(),
                    user_agent: user_agent.clone(),
                    lon: city.lon,
                    lat: city.lat,
                    user_id,
                    last_name: last_name.clone(),
                    first_name: first_name.clone(),
                    gender,
                    registration,
                    event_id: id(Topic::StatusChangeEvents),
                }));
        }
        if s.previous.map(|p| world.site.state(p).page) == Some(Page::Login) {
            self.pending.push_back(Event::Auth(AuthEvent {
                ts: s.ts,
                session_id,
                level: state.level,
                item_in_session: s.item,
                city: city.city.clone(),
                zip: city.zip.clone(),
                state: city.state.clone(),
                user_agent: user_agent.clone(),
                lon: city.lon,
                lat: city.lat,
                user_id,
                last_name: last_name.clone(),
                first_name: first_name.clone(),
                gender,
                registration,
                success: state.auth == Auth::LoggedIn,
                event_id: id(Topic::AuthEvents),
            }));
        }
        self.pending.push_back(Event::PageView(PageViewEvent {
            ts: s.ts,
            session_id,
            page: state.page,
            auth: state.auth,
            method: state.page.method(),
            status: state.page.status(),
            level: state.level,
            item_in_session: s.item,
            city: city.city.clone(),
            zip: city.zip.clone(),
            state: city.state.clone(),
            user_agent,
            lon: city.lon,
            lat: city.lat,
            user_id,
            last_name,
            first_name,
            gender,
            registration,
            artist: song.map(|s| s.artist.clone()),
            song: song.map(|s| s.title.clone()),
            duration: song.map(|s| s.duration),
            event_id: id(Topic::PageViewEvents),
        }));
    }
}

/// The id of the event of `topic` that the user's current request writes: unique in the run
/// (a user's session and item in it fix the request, which writes at most one event per
/// topic), and different between runs of different seeds or starts.
fn event_id(run_key: u64, user: &User, topic: Topic) -> EventId {
    let words = [
        u64::from(user.index),
        u64::from(user.session.seq),
        u64::from(user.session.item),
        topic.index() as u64,
    ];
    EventId::from_halves(
        hash(run_key, &words),
        hash(run_key ^ hash(ID_STREAM, &[]), &words),
    )
}

impl Iterator for Simulation {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            if self.admit_arrival() {
                continue;
            }
            let Some(Reverse((ts, index))) = self.queue.pop() else {
                self.done = true;
                continue;
            };
            if ts >= self.end {
                self.done = true;
                continue;
            }
            let index = index as usize;
            if ts >= self.start {
                self.write_events(index);
            }
            if self.users[index].advance(&self.world) {
                let next = self.users[index].session.ts;
                self.queue.push(Reverse((next, index as u32)));
            }
        }
    }
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("users", &self.users.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

//! The cookie secrets: 128-bit keys from the OS random source, rotated on a period, and the
//! time counter, kept in the `Config` map for the XDP program.
//!
//! [`SecretKeeper`] is the schedule, without I/O: `tick(now)` says whether the secrets changed
//! and the caller writes them into the map (`Shield::set_config`). Key rotation takes two
//! ticks (see `tcp_common::cookie`): the new key is written into the spare slot first and made
//! current on the next tick, so the XDP program never makes a cookie with a half-written key.
//! [`run`] drives a keeper from a tokio interval.
//!
//! # The fleet schedule (`serve --key-file`)
//!
//! Hosts behind ECMP must accept each other's cookies, and a restarted host its own. They
//! share one secret (the key file) and agree on everything else through their wall clocks
//! (`CLOCK_REALTIME`, kept close by NTP), so they never talk to each other. [`FleetKeeper`]
//! is that schedule; `tcp_common::cookie` ("Fleet schedule") has the arithmetic the XDP side
//! checks:
//!
//! ```text
//!   R        = --key-rotation (even, seconds; the same on every host)
//!   h        = UNIX seconds / (R / 2)         the cookie's time counter (half-epochs)
//!   epoch e  = h / 2                          its key: HKDF-SHA256(secret, R, e), slot e & 1
//!   spare    = key of e - 1 while h is even (first half), of e + 1 while h is odd
//! ```
//!
//! A cookie carries `h mod 4`, so a checker whose own `h` is `c` knows it among `c - 1 ..= c + 2`
//! with one hash. Clocks that differ by less than `R / 2` are at most one half-epoch apart:
//! any host accepts a cookie of any other for `R / 2` minus their skew after it was made
//! (with no skew, `R / 2` to `R`), which is also how long a restarted host still accepts
//! cookies it made before the restart. The key of an epoch is written into its slot half an
//! epoch before it becomes current, and becoming current is one write of `current` and
//! `counter`: the two-step rotation of the host schedule, for free. The per-process random keys
//! and the monotonic counter of the host schedule stay exactly as they were without a key file.
//!
//! On SIGHUP the key file is read again; a new secret makes the keys of the epochs that start
//! after the re-read (the current epoch's key, and the previous one, stay the old secret's), so
//! a fleet whose hosts all re-read within one epoch never refuses a cookie of another. A file
//! that cannot be read, or has loose permissions, leaves the secret in use (logged).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tcp_common::cookie::{
    CookieKey, CookieSecrets, DEFAULT_COUNTER_PERIOD_SECS, DEFAULT_KEY_ROTATION_SECS,
    MIN_KEY_ROTATION_PERIODS, counter_at,
};

use crate::keyfile::{self, FleetSecret};

/// How often the counter advances and the key rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretsSchedule {
    /// Length of one counter period: a cookie is valid for one to two of them.
    pub counter_period: Duration,
    /// Time between key rotations; the previous key stays valid for one rotation.
    pub key_rotation: Duration,
}

impl Default for SecretsSchedule {
    fn default() -> Self {
        SecretsSchedule {
            counter_period: Duration::from_secs(DEFAULT_COUNTER_PERIOD_SECS),
            key_rotation: Duration::from_secs(DEFAULT_KEY_ROTATION_SECS),
        }
    }
}

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    /// Counter period below one second.
    #[error("the cookie counter period must be at least 1 s")]
    CounterPeriodTooShort,
    /// Rotation shorter than two counter periods: a key would be overwritten while cookies it
    /// made are still valid.
    #[error(
        "the key rotation period must be at least {MIN_KEY_ROTATION_PERIODS} cookie counter periods"
    )]
    RotationTooShort,
    /// The fleet schedule counts half rotation periods in whole seconds.
    #[error(
        "with --key-file the key rotation period must be an even number of seconds, at least 2 (the cookie counts half-epochs)"
    )]
    FleetRotationNotEven,
}

impl SecretsSchedule {
    /// Checks the constraints the cookie relies on.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.counter_period.as_secs() < 1 {
            return Err(ScheduleError::CounterPeriodTooShort);
        }
        if self.key_rotation.as_secs()
            < self.counter_period.as_secs() * u64::from(MIN_KEY_ROTATION_PERIODS)
        {
            return Err(ScheduleError::RotationTooShort);
        }
        Ok(())
    }
}

/// A 128-bit key from the OS random source (`getrandom(2)`).
pub fn random_key() -> io::Result<CookieKey> {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: writes at most `b.len() - filled` bytes into `b[filled..]`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if let Ok(n) = usize::try_from(n) {
            filled += n;
        } else {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    Ok(CookieKey::from_bytes(b))
}

/// Seconds of `CLOCK_MONOTONIC`, the clock the counter is derived from.
#[must_use]
pub fn monotonic_secs() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0)
}

/// The secrets and their schedule.
#[derive(Debug)]
pub struct SecretKeeper {
    secrets: CookieSecrets,
    schedule: SecretsSchedule,
    last_rotation: u64,
    activate_pending: bool,
}

impl SecretKeeper {
    /// Two fresh random keys, the counter for `now_secs` (monotonic seconds).
    pub fn new(schedule: SecretsSchedule, now_secs: u64) -> io::Result<SecretKeeper> {
        schedule.validate().map_err(io::Error::other)?;
        let secrets = CookieSecrets {
            keys: [random_key()?, random_key()?],
            current: 0,
            counter: counter_at(now_secs, schedule.counter_period.as_secs()),
            ts_base: 0,
            schedule: CookieSecrets::HOST,
        };
        Ok(SecretKeeper { secrets, schedule, last_rotation: now_secs, activate_pending: false })
    }

    /// The secrets to write into the `Config` map.
    #[must_use]
    pub fn secrets(&self) -> CookieSecrets {
        self.secrets
    }

    /// Advances to `now_secs`: a new counter, the second step of a rotation, or the first step
    /// of the next one. Returns whether the secrets changed (then write them). Call at least
    /// once a second, so that the two steps of a rotation are about a second apart.
    pub fn tick(&mut self, now_secs: u64) -> io::Result<bool> {
        let mut changed = false;
        let counter = counter_at(now_secs, self.schedule.counter_period.as_secs());
        if counter != self.secrets.counter {
            self.secrets.counter = counter;
            changed = true;
        }
        if self.activate_pending {
            self.secrets.activate_next_key();
            self.activate_pending = false;
            changed = true;
        } else if now_secs.saturating_sub(self.last_rotation)
            >= self.schedule.key_rotation.as_secs()
        {
            self.secrets.install_next_key(random_key()?);
            self.last_rotation = now_secs;
            self.activate_pending = true;
            changed = true;
        }
        Ok(changed)
    }
}

/// Keeps the secrets current until the task is dropped: every second, `tick`, and on change
/// call `write` with the new secrets (e.g. `Shield::set_config` with them in the `Config`).
pub async fn run<F>(mut keeper: SecretKeeper, mut write: F) -> io::Result<()>
where
    F: FnMut(&CookieSecrets) -> io::Result<()>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if keeper.tick(monotonic_secs())? {
            write(&keeper.secrets())?;
        }
    }
}

/// The wall clock the fleet schedule follows: `CLOCK_REALTIME` (UNIX time), shifted by
/// `offset_secs`, which only tests set (`serve --test-clock-offset`, hidden) to play a host
/// whose clock is wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallClock {
    /// Seconds added to the system's wall clock (tests only; 0 in service).
    pub offset_secs: i64,
}

impl WallClock {
    /// Milliseconds since the UNIX epoch (0 before it).
    #[must_use]
    pub fn unix_ms(self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer; CLOCK_REALTIME always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &raw mut ts) };
        let ms = ts
            .tv_sec
            .saturating_add(self.offset_secs)
            .saturating_mul(1000)
            .saturating_add(ts.tv_nsec / 1_000_000);
        u64::try_from(ms).unwrap_or(0)
    }

    /// Seconds since the UNIX epoch.
    #[must_use]
    pub fn unix_secs(self) -> u64 {
        self.unix_ms() / 1000
    }
}

/// Milliseconds of `CLOCK_MONOTONIC`, the clock of the TCP timestamps (`cookie::ts_clock`).
#[must_use]
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000
}

/// `CookieSecrets::ts_base` of a host whose clocks read `unix_ms` and `monotonic_ms` at the
/// same moment: their difference, to the nearest multiple of 64 ms (so the option bits in a
/// TSval's low six bits decode on every host), truncated to 32 bits as TCP timestamps are.
/// The timestamp clocks of two hosts then differ by their wall clocks' skew and at most 64 ms.
#[must_use]
#[expect(clippy::cast_possible_truncation, reason = "TCP timestamps wrap (RFC 7323)")]
pub fn timestamp_base(unix_ms: u64, monotonic_ms: u64) -> u32 {
    (unix_ms.wrapping_sub(monotonic_ms).wrapping_add(32) & !63) as u32
}

/// The fleet's key schedule: keys from the shared secret and the epoch, the counter from the
/// wall clock (see the module's "The fleet schedule"). Like [`SecretKeeper`], without I/O:
/// `tick(unix_secs)` says whether to write the secrets again. Its `Debug` shows no key.
pub struct FleetKeeper {
    secret: FleetSecret,
    /// After a SIGHUP brought a new secret: the one before, and the last epoch it keys.
    retiring: Option<(FleetSecret, u64)>,
    rotation_secs: u64,
    secrets: CookieSecrets,
}

impl std::fmt::Debug for FleetKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetKeeper")
            .field("rotation_secs", &self.rotation_secs)
            .field("counter", &self.secrets.counter)
            .field("retiring", &self.retiring.as_ref().map(|(_, last)| last))
            .finish_non_exhaustive()
    }
}

impl FleetKeeper {
    /// The schedule of `secret` with epochs of `rotation`, at `unix_secs`, on a host whose
    /// timestamp base is `ts_base` ([`timestamp_base`]).
    pub fn new(
        secret: FleetSecret,
        rotation: Duration,
        unix_secs: u64,
        ts_base: u32,
    ) -> Result<FleetKeeper, ScheduleError> {
        let rotation_secs = rotation.as_secs();
        if rotation_secs < 2 || !rotation_secs.is_multiple_of(2) || rotation.subsec_nanos() != 0 {
            return Err(ScheduleError::FleetRotationNotEven);
        }
        let mut keeper = FleetKeeper {
            secret,
            retiring: None,
            rotation_secs,
            secrets: CookieSecrets {
                ts_base,
                schedule: CookieSecrets::FLEET,
                ..Default::default()
            },
        };
        keeper.derive(keeper.half_epoch(unix_secs));
        Ok(keeper)
    }

    /// The secrets to write into the `Config` map.
    #[must_use]
    pub fn secrets(&self) -> CookieSecrets {
        self.secrets
    }

    /// The half-epoch (cookie counter) at `unix_secs`.
    #[must_use]
    pub fn half_epoch(&self, unix_secs: u64) -> u64 {
        unix_secs / (self.rotation_secs / 2)
    }

    /// Advances to `unix_secs`; returns whether the secrets changed (then write them). Call
    /// about once a second: a change is late by at most the time between calls.
    pub fn tick(&mut self, unix_secs: u64) -> bool {
        let h = self.half_epoch(unix_secs);
        if u64::from(self.secrets.counter) == h & u64::from(u32::MAX) {
            return false;
        }
        self.derive(h);
        true
    }

    /// Takes `secret` (from a re-read key file) at `unix_secs`. `None` if it is the secret in
    /// use; else the UNIX second from which it makes cookies: the start of the next epoch.
    /// The current and previous epochs keep the old secret's keys, so cookies made before
    /// the re-read, here or on hosts that have not re-read yet, still pass.
    pub fn reload(&mut self, secret: FleetSecret, unix_secs: u64) -> Option<u64> {
        if secret == self.secret {
            return None;
        }
        let h = self.half_epoch(unix_secs);
        let epoch = h / 2;
        let in_force = self.secret_of(epoch).clone();
        self.retiring = Some((in_force, epoch));
        self.secret = secret;
        self.derive(h);
        Some((epoch + 1) * self.rotation_secs)
    }

    /// The secret that keys `epoch`.
    fn secret_of(&self, epoch: u64) -> &FleetSecret {
        match &self.retiring {
            Some((old, last)) if epoch <= *last => old,
            _ => &self.secret,
        }
    }

    /// Writes the keys and counter of half-epoch `h`.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the counter wraps; only differences matter"
    )]
    fn derive(&mut self, h: u64) {
        let epoch = h / 2;
        let spare = if h.is_multiple_of(2) { epoch.wrapping_sub(1) } else { epoch.wrapping_add(1) };
        if self.retiring.as_ref().is_some_and(|(_, last)| epoch.wrapping_sub(1) > *last) {
            self.retiring = None;
        }
        for e in [epoch, spare] {
            let key = self.secret_of(e).cookie_key(self.rotation_secs, e);
            self.secrets.keys[(e % 2) as usize] = key;
        }
        self.secrets.current = (epoch % 2) as u32;
        self.secrets.counter = h as u32;
    }
}

/// `serve`'s options for the fleet schedule (flattened into `ServeArgs`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FleetArgs {
    /// Share the cookie keys with every host that has this key file (`synshield keygen`): any
    /// of them then accepts the third ACK of a handshake another answered, and a restart
    /// forgets no cookie. Keys and the cookie clock follow the wall clock: keep the hosts in
    /// NTP sync (skew up to half of --key-rotation is tolerated), give them all the same
    /// --key-rotation; a cookie lives half to one rotation period. SIGHUP re-reads the file.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// TEST ONLY (hidden): seconds added to the wall clock the fleet schedule reads, so lab
    /// tests can play a host whose clock is wrong. Never set in service.
    #[arg(
        long,
        hide = true,
        value_name = "SECONDS",
        allow_hyphen_values = true,
        requires = "key_file"
    )]
    pub test_clock_offset: Option<i64>,
}

/// The key schedule `serve` runs: the host's own random keys, or the fleet's.
#[derive(Debug)]
pub enum Keeper {
    /// Per-process random keys, monotonic counter (no `--key-file`).
    Host(SecretKeeper),
    /// The fleet's schedule, with what SIGHUP needs.
    Fleet {
        /// The schedule.
        keeper: FleetKeeper,
        /// The key file, read again on SIGHUP.
        key_file: PathBuf,
        /// The wall clock.
        clock: WallClock,
    },
}

impl Keeper {
    /// The schedule the options ask for (the key file is read here, during the privileged
    /// setup; no runtime needed).
    pub fn start(fleet: &FleetArgs, schedule: SecretsSchedule) -> anyhow::Result<Keeper> {
        use anyhow::Context as _;
        let Some(key_file) = &fleet.key_file else {
            schedule.validate()?;
            let keeper = SecretKeeper::new(schedule, monotonic_secs())
                .context("reading the OS random source for the cookie key")?;
            return Ok(Keeper::Host(keeper));
        };
        let secret = keyfile::read(key_file)?;
        let clock = WallClock { offset_secs: fleet.test_clock_offset.unwrap_or(0) };
        let ts_base = timestamp_base(clock.unix_ms(), monotonic_ms());
        let keeper = FleetKeeper::new(secret, schedule.key_rotation, clock.unix_secs(), ts_base)?;
        if schedule.counter_period != Duration::from_secs(DEFAULT_COUNTER_PERIOD_SECS) {
            tracing::warn!(
                "--cookie-period is not used with --key-file: the cookie counter period is half of --key-rotation"
            );
        }
        tracing::info!(
            key_file = %key_file.display(),
            rotation_s = keeper.rotation_secs,
            clock_offset_s = clock.offset_secs,
            "fleet key schedule: cookie keys from the key file and the wall clock"
        );
        Ok(Keeper::Fleet { keeper, key_file: key_file.clone(), clock })
    }

    /// The secrets to write into the `Config` map now.
    #[must_use]
    pub fn secrets(&self) -> CookieSecrets {
        match self {
            Keeper::Host(k) => k.secrets(),
            Keeper::Fleet { keeper, .. } => keeper.secrets(),
        }
    }

    /// The task that keeps the secrets current until it is dropped, calling `write` on every
    /// change (see [`run`]); the fleet schedule also re-reads its key file on SIGHUP. Call it
    /// in the runtime before saying the process is ready: the SIGHUP handler is installed here,
    /// at once (SIGHUP's default action ends the process), not when the task first runs.
    pub fn run<F>(self, write: F) -> io::Result<KeeperTask>
    where
        F: FnMut(&CookieSecrets) -> io::Result<()> + Send + 'static,
    {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(match self {
            // Nothing to re-read: the keys are this host's own. SIGHUP (`systemctl reload`)
            // must not end the process, so it is caught and said to do nothing.
            Keeper::Host(keeper) => Box::pin(async move {
                let ignore = async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(
                            "SIGHUP: nothing to reload (the cookie keys are this host's own; --key-file makes them a fleet's)"
                        );
                    }
                };
                tokio::select! {
                    r = run(keeper, write) => r,
                    () = ignore => Ok(()),
                }
            }),
            Keeper::Fleet { keeper, key_file, clock } => {
                Box::pin(async move { run_fleet(keeper, &key_file, clock, hangup, write).await })
            }
        })
    }
}

/// What [`Keeper::run`] returns: a future to spawn.
pub type KeeperTask = std::pin::Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// The fleet schedule's loop: every second `tick`, on SIGHUP re-read the key file.
async fn run_fleet<F>(
    mut keeper: FleetKeeper,
    key_file: &std::path::Path,
    clock: WallClock,
    mut hangup: tokio::signal::unix::Signal,
    mut write: F,
) -> io::Result<()>
where
    F: FnMut(&CookieSecrets) -> io::Result<()>,
{
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if keeper.tick(clock.unix_secs()) {
                    write(&keeper.secrets())?;
                }
            }
            _ = hangup.recv() => match keyfile::read(key_file) {
                Ok(secret) => {
                    let now = clock.unix_secs();
                    if let Some(from) = keeper.reload(secret, now) {
                        write(&keeper.secrets())?;
                        tracing::info!(
                            key_file = %key_file.display(),
                            from_unix_s = from,
                            in_s = from.saturating_sub(now),
                            "SIGHUP: a new fleet secret; it makes cookies from the next epoch"
                        );
                    } else {
                        tracing::info!(key_file = %key_file.display(), "SIGHUP: the fleet secret is unchanged");
                    }
                }
                Err(e) => tracing::warn!("SIGHUP: {e}; the fleet secret in use stays"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_common::cookie::TupleV4;

    const T: TupleV4 = TupleV4 {
        client: [192, 0, 2, 1],
        server: [192, 0, 2, 2],
        client_port: 1234,
        server_port: 80,
    };

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key().expect("getrandom"), random_key().expect("getrandom"));
    }

    #[test]
    fn schedule_constraints() {
        assert_eq!(SecretsSchedule::default().validate(), Ok(()));
        let s = SecretsSchedule {
            counter_period: Duration::from_secs(64),
            key_rotation: Duration::from_secs(100),
        };
        assert_eq!(s.validate(), Err(ScheduleError::RotationTooShort));
    }

    #[test]
    fn rotation_takes_two_ticks_and_keeps_previous_key() {
        let sched = SecretsSchedule {
            counter_period: Duration::from_secs(10),
            key_rotation: Duration::from_secs(30),
        };
        let mut k = SecretKeeper::new(sched, 1000).expect("keys");
        let first = k.secrets().make(&T, 7, 0);
        assert!(!k.tick(1005).expect("tick"), "nothing due");
        assert!(k.tick(1010).expect("tick"), "counter advanced");
        assert!(k.secrets().check(&T, 7, first.isn).is_ok());
        let before = k.secrets().current;
        assert!(k.tick(1030).expect("tick"), "rotation step 1");
        assert_eq!(k.secrets().current, before, "new key not current yet");
        assert!(k.tick(1031).expect("tick"), "rotation step 2");
        assert_ne!(k.secrets().current, before);
        let second = k.secrets().make(&T, 7, 0);
        assert!(k.secrets().check(&T, 7, second.isn).is_ok());
        // The counter moved on (1000 -> 1031 is three periods): the first cookie expired.
        assert!(k.secrets().check(&T, 7, first.isn).is_err());
    }

    const R: u64 = 60;
    /// A UNIX time at the start of an epoch of `R` (2026-ish).
    const T0: u64 = 1_800_000_000 / R * R;

    fn secret(b: u8) -> FleetSecret {
        FleetSecret::from_bytes([b; keyfile::SECRET_LEN])
    }

    fn host(b: u8, unix_secs: u64) -> FleetKeeper {
        FleetKeeper::new(secret(b), Duration::from_secs(R), unix_secs, 0).expect("schedule")
    }

    fn accepts(checker: &FleetKeeper, maker: &FleetKeeper, isn: u32) -> bool {
        let cookie = maker.secrets().make(&T, isn, 1);
        checker.secrets().check(&T, isn, cookie.isn).is_ok()
    }

    #[test]
    fn fleet_rotation_must_be_even() {
        for r in [0, 1, 3, 61] {
            let e = FleetKeeper::new(secret(1), Duration::from_secs(r), T0, 0).expect_err("odd");
            assert_eq!(e, ScheduleError::FleetRotationNotEven);
        }
        assert!(FleetKeeper::new(secret(1), Duration::from_millis(60_500), T0, 0).is_err());
    }

    /// Every second of two epochs, every skew up to just under R / 2 both ways: a cookie made
    /// on one host passes on the other at once, and as long as its age and the skew stay
    /// below R / 2.
    #[test]
    fn fleet_hosts_accept_each_other_within_half_a_rotation_of_skew() {
        let mut isn = 0u32;
        for t in T0..T0 + 2 * R {
            for skew in -(R.cast_signed() / 2 - 1)..R.cast_signed() / 2 {
                let maker = host(1, t);
                let checker = host(1, t.saturating_add_signed(skew));
                isn = isn.wrapping_add(1);
                assert!(accepts(&checker, &maker, isn), "t {t} skew {skew}");
                assert!(accepts(&maker, &checker, isn), "t {t} skew {skew}, the other way");
            }
        }
    }

    #[test]
    fn fleet_cookies_live_half_to_one_rotation() {
        for t in T0..T0 + R {
            let maker = host(1, t);
            for age in 0..R / 2 {
                assert!(accepts(&host(1, t + age), &maker, 9), "t {t} age {age}");
            }
            for age in [R, R + 1, 2 * R, 10 * R] {
                assert!(!accepts(&host(1, t + age), &maker, 9), "t {t} age {age}");
            }
        }
    }

    #[test]
    fn a_restarted_host_accepts_its_cookies_and_another_secret_does_not() {
        let before = host(1, T0 + 17);
        assert!(accepts(&host(1, T0 + 20), &before, 5), "restarted 3 s later");
        assert!(!accepts(&host(2, T0 + 17), &before, 5), "another key file");
    }

    /// The key that makes cookies is never written by the update that makes it current: it
    /// was installed half an epoch before (the two-step rotation of the host schedule).
    #[test]
    fn fleet_keys_are_installed_before_they_become_current() {
        let mut k = host(1, T0);
        let mut changes = 0;
        for t in T0..T0 + 3 * R {
            let old = k.secrets();
            if k.tick(t) {
                changes += 1;
                let new = k.secrets();
                let cur = new.current as usize;
                assert_eq!(new.keys[cur], old.keys[cur], "t {t}: the current key was in place");
                assert_eq!(new.current, (new.counter >> 1) & 1, "K is bit 1 of the counter");
                assert_eq!(new.schedule, CookieSecrets::FLEET);
            }
        }
        assert_eq!(changes, 5, "one write per half-epoch (six, the first at start)");
        assert!(!k.tick(T0 + 3 * R - 1), "nothing due within a half-epoch");
    }

    #[test]
    fn a_new_secret_makes_cookies_from_the_next_epoch() {
        for reload_at in [T0 + 5, T0 + R / 2 + 5] {
            let mut k = host(1, reload_at);
            let made_before = host(1, reload_at - 1);
            assert_eq!(k.reload(secret(1), reload_at), None, "same secret: nothing to do");
            assert_eq!(k.reload(secret(2), reload_at), Some(T0 + R));
            // Cookies of this epoch, made here or on hosts that have not re-read: still good.
            assert!(accepts(&k, &made_before, 3));
            assert!(accepts(&k, &host(1, reload_at + 1), 3));
            // From the next epoch on, the new secret: the same keys as a host that started
            // with it, and those of a host that never re-read no longer pass.
            for t in [T0 + R, T0 + R + R / 2 - 1, T0 + 2 * R] {
                assert!(k.tick(t) || t == T0 + R + R / 2 - 1);
                assert!(accepts(&host(2, t), &k, 4), "t {t}");
                assert!(accepts(&k, &host(2, t), 4), "t {t}");
            }
            assert!(!accepts(&k, &host(1, T0 + 2 * R), 4));
            assert!(k.retiring.is_none(), "the old secret is dropped once no key needs it");
        }
    }

    #[test]
    fn timestamp_base_is_a_multiple_of_64_within_32_ms() {
        for (unix, mono) in [(1_800_000_000_123, 5_000), (1_000, 1_000), (1_000, 40), (70, 1_000)] {
            let b = timestamp_base(unix, mono);
            assert_eq!(b % 64, 0);
            let exact = u32::try_from(unix.wrapping_sub(mono) % (1 << 32)).expect("32 bits");
            assert!(b.wrapping_sub(exact).wrapping_add(32) <= 64, "{unix} {mono}: {b} vs {exact}");
        }
    }

    #[test]
    fn fleet_debug_shows_no_key() {
        let k = host(0xab, T0);
        let text = format!("{k:?}");
        let key = k.secrets().keys[0];
        for needle in [key.k0.to_string(), format!("{:x}", key.k0), "abab".to_owned()] {
            assert!(!text.contains(&needle), "{text}");
        }
    }
}

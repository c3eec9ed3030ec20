//! The cookie secrets: 128-bit keys from the OS random source, rotated on a period, and the
//! time counter, kept in the `Config` map for the XDP program.
//!
//! [`SecretKeeper`] is the schedule, without I/O: `tick(now)` says whether the secrets changed
//! and the caller writes them into the map (`Shield::set_config`). Key rotation takes two
//! ticks (see `tcp_common::cookie`): the new key is written into the spare slot first and made
//! current on the next tick, so the XDP program never makes a cookie with a half-written key.
//! [`run`] drives a keeper from a tokio interval.

use std::io;
use std::time::Duration;

use tcp_common::cookie::{
    CookieKey, CookieSecrets, DEFAULT_COUNTER_PERIOD_SECS, DEFAULT_KEY_ROTATION_SECS,
    MIN_KEY_ROTATION_PERIODS, counter_at,
};

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
}

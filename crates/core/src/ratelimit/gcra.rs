//! The GCRA arithmetic, free of I/O and of clocks: every function takes `now` explicitly.
//!
//! All quantities are integer milliseconds. A policy is only accepted when its emission
//! interval is a whole number of milliseconds (see [`super::Policy::new`]), so nothing here
//! ever rounds: n admissions always advance `tat` by exactly n × T.

/// One policy's GCRA parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// T, the emission interval: how much time one quota unit costs.
    pub(crate) interval: u64,
    /// b, the burst: how many units a drained bucket admits at once.
    pub(crate) burst: u32,
}

impl Rate {
    /// L = b × T: how far ahead of `now` the `tat` of a full bucket runs.
    pub(crate) fn capacity(self) -> u64 {
        self.interval.saturating_mul(u64::from(self.burst))
    }

    /// n × T: the time a request of `units` costs.
    pub(crate) fn cost(self, units: u32) -> u64 {
        self.interval.saturating_mul(u64::from(units))
    }

    /// Whether a request of `units` can ever be admitted (only if it fits in an empty bucket).
    pub(crate) fn fits_at_all(self, units: u32) -> bool {
        units <= self.burst
    }

    /// The largest `tat` at which a request of `units` is still admitted at `now`:
    /// `tat + n·T <= now + L`  ⇔  `tat <= now + L − n·T`.
    pub(crate) fn allow_at(self, now: u64, units: u32) -> u64 {
        now.saturating_add(self.capacity())
            .saturating_sub(self.cost(units))
    }

    /// The earliest instant (never before `now`) at which a request of `units` is admitted,
    /// given the bucket's `tat`: the instant at which `max(tat, t) + n·T <= t + L`.
    pub(crate) fn admissible_at(self, tat: u64, now: u64, units: u32) -> u64 {
        tat.saturating_add(self.cost(units))
            .saturating_sub(self.capacity())
            .max(now)
    }

    /// Whole quota units that could be spent at `now` given the bucket's `tat`.
    pub(crate) fn remaining(self, tat: u64, now: u64) -> u32 {
        if self.interval == 0 {
            return self.burst;
        }
        let room = now
            .saturating_add(self.capacity())
            .saturating_sub(tat.max(now));
        u32::try_from(room / self.interval)
            .unwrap_or(u32::MAX)
            .min(self.burst)
    }
}

/// What is known about a key's bucket at some instant `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// No debt: the item is absent, expired, or its `tat` is not after `now`.
    /// All three are the same state, and a request costs `now + n·T`.
    Drained,
    /// Debt outstanding until `tat` (> `now`); a request costs `tat + n·T`.
    Busy { tat: u64 },
}

impl Bucket {
    /// The bucket as seen at `now`, given its `tat` (`None` when absent or expired).
    pub(crate) fn at(tat: Option<u64>, now: u64) -> Self {
        match tat {
            Some(tat) if tat > now => Self::Busy { tat },
            _ => Self::Drained,
        }
    }
}

/// What to do next for a request of `units` against a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Start a fresh bucket: write `tat = now + n·T`, guarded by "absent, expired or drained".
    Fresh { tat: u64 },
    /// Extend the debt in place: write `tat = tat + inc`, guarded by "busy and `tat <= allow_at`".
    Extend { inc: u64, allow_at: u64 },
    /// Refuse; the request would be admitted at `admissible_at` if nothing else happened.
    Refuse { tat: u64, admissible_at: u64 },
}

/// The GCRA decision for a request of `units` (which must fit at all) at `now`.
pub(crate) fn step(rate: Rate, bucket: Bucket, now: u64, units: u32) -> Step {
    match bucket {
        Bucket::Drained => Step::Fresh {
            tat: now.saturating_add(rate.cost(units)),
        },
        Bucket::Busy { tat } => {
            let allow_at = rate.allow_at(now, units);
            if tat <= allow_at {
                Step::Extend {
                    inc: rate.cost(units),
                    allow_at,
                }
            } else {
                Step::Refuse {
                    tat,
                    admissible_at: rate.admissible_at(tat, now, units),
                }
            }
        }
    }
}

/// `ceil(ms / 1000)`: whole seconds that are never shorter than `ms`.
pub(crate) fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 60 per minute, burst 20: T = 1 s, L = 20 s.
    const PREDICT: Rate = Rate {
        interval: 1_000,
        burst: 20,
    };
    const T0: u64 = 1_700_000_000_000;

    /// Runs the GCRA on a single in-memory bucket: what DynamoDB does, one write at a time.
    fn admit(rate: Rate, tat: &mut Option<u64>, now: u64, units: u32) -> Result<(), u64> {
        if !rate.fits_at_all(units) {
            return Err(u64::MAX);
        }
        match step(rate, Bucket::at(*tat, now), now, units) {
            Step::Fresh { tat: new } => *tat = Some(new),
            Step::Extend { inc, allow_at } => {
                let old = tat.unwrap_or(0);
                assert!(old > now && old <= allow_at, "the write's condition holds");
                *tat = Some(old + inc);
            }
            Step::Refuse { admissible_at, .. } => return Err(admissible_at),
        }
        Ok(())
    }

    #[test]
    fn a_drained_bucket_admits_exactly_the_burst_at_one_instant() {
        let mut tat = None;
        let admitted = (0..100)
            .filter(|_| admit(PREDICT, &mut tat, T0, 1).is_ok())
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(tat, Some(T0 + 20_000));
    }

    #[test]
    fn a_refusal_names_the_exact_instant_of_admission() {
        let mut tat = None;
        for _ in 0..20 {
            admit(PREDICT, &mut tat, T0, 1).unwrap();
        }
        let at = admit(PREDICT, &mut tat, T0 + 250, 1).unwrap_err();
        assert_eq!(at, T0 + 1_000);
        assert!(admit(PREDICT, &mut tat, at - 1, 1).is_err());
        assert!(admit(PREDICT, &mut tat, at, 1).is_ok());
    }

    #[test]
    fn sustained_admissions_over_a_day_are_exactly_burst_plus_span_times_rate() {
        // A greedy client asking every 250 ms for 24 hours.
        let mut tat = None;
        let span = 24 * 3_600 * 1_000;
        let mut admitted = 0_u64;
        let mut now = T0;
        while now <= T0 + span {
            while admit(PREDICT, &mut tat, now, 1).is_ok() {
                admitted += 1;
            }
            now += 250;
        }
        assert_eq!(admitted, 20 + span / 1_000);
    }

    #[test]
    fn a_request_costing_more_than_is_left_is_refused_whole_and_changes_nothing() {
        let rate = Rate {
            interval: 1_000,
            burst: 60,
        };
        let mut tat = None;
        admit(rate, &mut tat, T0, 20).unwrap();
        let before = tat;
        assert!(admit(rate, &mut tat, T0, 50).is_err());
        assert_eq!(tat, before);
        assert_eq!(rate.remaining(tat.unwrap(), T0), 40);
        admit(rate, &mut tat, T0, 40).unwrap();
        assert_eq!(rate.remaining(tat.unwrap(), T0), 0);
    }

    #[test]
    fn a_request_costing_more_than_the_burst_never_fits() {
        assert!(!PREDICT.fits_at_all(21));
        assert!(PREDICT.fits_at_all(20));
    }

    #[test]
    fn remaining_counts_whole_units_of_free_capacity() {
        assert_eq!(PREDICT.remaining(T0, T0), 20);
        assert_eq!(PREDICT.remaining(T0 + 19_500, T0), 0);
        assert_eq!(PREDICT.remaining(T0 + 18_500, T0), 1);
        assert_eq!(PREDICT.remaining(T0 - 5_000, T0), 20);
    }

    #[test]
    fn a_bucket_whose_tat_has_passed_is_drained() {
        assert_eq!(Bucket::at(Some(T0), T0), Bucket::Drained);
        assert_eq!(Bucket::at(Some(T0 + 1), T0), Bucket::Busy { tat: T0 + 1 });
        assert_eq!(Bucket::at(None, T0), Bucket::Drained);
    }

    #[test]
    fn seconds_round_up_so_a_wait_is_never_shortened() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1_000), 1);
        assert_eq!(ceil_secs(1_001), 2);
    }
}

//! The one-time password rule: a code is checked against the time steps within `window` of
//! now, the check says *which* step matched, and a step at or before the last accepted one is
//! refused. This file is where "an OTP is used once" lives.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    SHA1,
    SHA256,
    SHA512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        }
    }

    /// Length of a freshly generated secret: the hash's output size, as RFC 4226 advises.
    pub fn secret_len(self) -> usize {
        match self {
            Algorithm::SHA1 => 20,
            Algorithm::SHA256 => 32,
            Algorithm::SHA512 => 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpParams {
    pub period: u64,
    pub digits: usize,
    pub algorithm: Algorithm,
    /// Steps accepted either side of the current one.
    pub window: u64,
}

impl Default for OtpParams {
    fn default() -> Self {
        OtpParams {
            period: 60,
            digits: 6,
            algorithm: Algorithm::SHA1,
            window: 1,
        }
    }
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpRefusal {
    /// No step in the window produces this code.
    Invalid,
    /// The code is right but its step is at or before the last accepted one.
    Replayed,
}

impl OtpParams {
    /// The codes of `steps` for `secret`, in order (RFC 6238 through totp-rs, the counter
    /// being the time step). totp-rs keys one HMAC per step; the window's cost is measured
    /// in BENCHMARKS.md.
    fn codes(&self, secret: &[u8], steps: std::ops::RangeInclusive<u64>) -> Vec<String> {
        let algorithm = match self.algorithm {
            Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
            Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
            Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
        };
        // Unchecked: imported secrets may be shorter than the 128 bits totp-rs's checked
        // constructor asks for and must still verify. Digits are 6..=8 (config). Skew 0:
        // the window is ours.
        let totp =
            totp_rs::TOTP::new_unchecked(algorithm, self.digits, 0, self.period, secret.to_vec());
        steps
            .map(|step| totp.generate(step.saturating_mul(self.period)))
            .collect()
    }

    /// The step that contains `now`.
    pub fn step_at(&self, now: UnixTime) -> u64 {
        u64::try_from(now).unwrap_or(0) / self.period
    }

    /// The code shown for `step`.
    pub fn code_for_step(&self, secret: &[u8], step: u64) -> String {
        self.codes(secret, step..=step).pop().unwrap_or_default()
    }

    /// Checks `code` against the window around `now` and refuses steps at or before
    /// `last_step`. Returns the step to record as the new last accepted one.
    pub fn verify(
        &self,
        secret: &[u8],
        code: &str,
        now: UnixTime,
        last_step: Option<u64>,
    ) -> Result<u64, OtpRefusal> {
        if code.len() != self.digits || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OtpRefusal::Invalid);
        }
        let current = self.step_at(now);
        let first = current.saturating_sub(self.window);
        let last = current.saturating_add(self.window);
        let mut matched: Option<u64> = None;
        let is_fresh = |step: u64| last_step.is_none_or(|l| step > l);
        // Every step is computed and compared in constant time, so timing does not tell
        // which step (if any) matched. Two steps of one window can show the same code: the
        // earliest fresh one is taken, so no later code is burnt by a match ahead of it.
        for (step, candidate) in (first..=last).zip(self.codes(secret, first..=last)) {
            if bool::from(candidate.as_bytes().ct_eq(code.as_bytes()))
                && matched.is_none_or(|m| is_fresh(step) && !is_fresh(m))
            {
                matched = Some(step);
            }
        }
        match matched {
            None => Err(OtpRefusal::Invalid),
            Some(step) if last_step.is_some_and(|l| step <= l) => Err(OtpRefusal::Replayed),
            Some(step) => Ok(step),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn rfc(alg: Algorithm) -> OtpParams {
        OtpParams {
            period: 30,
            digits: 8,
            algorithm: alg,
            window: 0,
        }
    }

    /// RFC 6238 appendix B, all three hashes.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let cases: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in cases {
            for (alg, seed, want) in [
                (Algorithm::SHA1, SEED20, sha1),
                (Algorithm::SHA256, SEED32, sha256),
                (Algorithm::SHA512, SEED64, sha512),
            ] {
                let p = rfc(alg);
                assert_eq!(p.code_for_step(seed, p.step_at(t)), want, "{alg:?} at {t}");
                assert_eq!(p.verify(seed, want, t, None), Ok(p.step_at(t)));
            }
        }
    }

    /// 60-second codes agree with oathtool (`oathtool --totp -s 60 -N @T HEX`).
    #[test]
    fn sixty_second_codes_match_oathtool() {
        let Ok(out) = std::process::Command::new("oathtool")
            .args(["--totp", "-s", "60", "-d", "6", "-N", "@1700000000"])
            .arg("3132333435363738393031323334353637383930")
            .output()
        else {
            panic!("oathtool is required for this test (Debian package oathtool)");
        };
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let p = OtpParams::default();
        assert_eq!(p.code_for_step(SEED20, p.step_at(1_700_000_000)), theirs);
        for (alg, name, seed) in [
            (Algorithm::SHA256, "sha256", SEED32),
            (Algorithm::SHA512, "sha512", SEED64),
        ] {
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            let out = std::process::Command::new("oathtool")
                .arg(format!("--totp={name}"))
                .args(["-s", "60", "-d", "6", "-N", "@1234567890"])
                .arg(hex)
                .output()
                .expect("oathtool runs");
            let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let p = OtpParams {
                algorithm: alg,
                ..OtpParams::default()
            };
            assert_eq!(
                p.code_for_step(seed, p.step_at(1_234_567_890)),
                theirs,
                "{name}"
            );
        }
    }

    #[test]
    fn window_edges() {
        let p = OtpParams::default();
        let now = 1_700_000_000;
        let step = p.step_at(now);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = (step as i64 + offset) as u64;
            let code = p.code_for_step(SEED20, s);
            let got = p.verify(SEED20, &code, now, None);
            if ok {
                assert_eq!(got, Ok(s), "offset {offset}");
            } else {
                assert_eq!(got, Err(OtpRefusal::Invalid), "offset {offset}");
            }
        }
        let narrow = OtpParams { window: 0, ..p };
        let prev = p.code_for_step(SEED20, step - 1);
        assert_eq!(
            narrow.verify(SEED20, &prev, now, None),
            Err(OtpRefusal::Invalid)
        );
    }

    #[test]
    fn a_step_is_accepted_once() {
        let p = OtpParams::default();
        let now = 1_700_000_000;
        let step = p.step_at(now);
        let code = p.code_for_step(SEED20, step);
        let accepted = p.verify(SEED20, &code, now, None).expect("fresh code");
        assert_eq!(
            p.verify(SEED20, &code, now, Some(accepted)),
            Err(OtpRefusal::Replayed)
        );
        // An older step inside the window is refused too once a later one was used.
        let older = p.code_for_step(SEED20, step - 1);
        assert_eq!(
            p.verify(SEED20, &older, now, Some(step)),
            Err(OtpRefusal::Replayed)
        );
        // The next step is fine.
        let next = p.code_for_step(SEED20, step + 1);
        assert_eq!(p.verify(SEED20, &next, now + 60, Some(step)), Ok(step + 1));
    }

    #[test]
    fn a_code_shown_by_two_steps_of_the_window_spends_the_earlier_one() {
        // SEED20 shows 037719 at steps 28687504 and 28687506.
        let p = OtpParams::default();
        let (early, late) = (28_687_504, 28_687_506);
        assert_eq!(p.code_for_step(SEED20, early), "037719");
        assert_eq!(p.code_for_step(SEED20, late), "037719");
        let now = i64::try_from((early + 1) * p.period).expect("a time");
        // Taking the later step would refuse the customer's next code (early + 1).
        assert_eq!(p.verify(SEED20, "037719", now, None), Ok(early));
        let next = p.code_for_step(SEED20, early + 1);
        assert_eq!(p.verify(SEED20, &next, now, Some(early)), Ok(early + 1));
        // Once the earlier step is spent, the same code is the later step's.
        assert_eq!(p.verify(SEED20, "037719", now, Some(early)), Ok(late));
        assert_eq!(
            p.verify(SEED20, "037719", now, Some(late)),
            Err(OtpRefusal::Replayed)
        );
    }

    #[test]
    fn malformed_codes_are_invalid() {
        let p = OtpParams::default();
        for code in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                p.verify(SEED20, code, 1_700_000_000, None),
                Err(OtpRefusal::Invalid)
            );
        }
    }

    /// The cost of one verification at the widest window (10), by hand:
    /// `cargo test -p otpd-core --release --lib verification_cost -- --ignored --nocapture`.
    /// Prints the median of 9 runs of 2000 verifications each, per hash.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn verification_cost() {
        let now = 1_700_000_000;
        for (alg, seed) in [
            (Algorithm::SHA1, SEED20),
            (Algorithm::SHA256, SEED32),
            (Algorithm::SHA512, SEED64),
        ] {
            let p = OtpParams {
                algorithm: alg,
                window: 10,
                ..OtpParams::default()
            };
            let code = p.code_for_step(seed, p.step_at(now));
            let mut runs: Vec<f64> = (0..9)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for _ in 0..2000 {
                        let got = p.verify(std::hint::black_box(seed), &code, now, None);
                        assert!(std::hint::black_box(got).is_ok());
                    }
                    start.elapsed().as_secs_f64() * 1e6 / 2000.0
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            println!(
                "{alg:?} window 10: median {:.2} µs per verification (runs {:.2}..{:.2})",
                runs[4], runs[0], runs[8]
            );
        }
    }
}

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
        // No issuer and an empty account (no allocation): the login path does not pay for
        // the URI, which only `otpauth_uri` builds.
        let totp = self.totp(secret, None, String::new());
        steps
            .map(|step| totp.generate(step.saturating_mul(self.period)))
            .collect()
    }

    /// totp-rs's `TOTP` for `secret`. Unchecked: imported secrets may be shorter than the
    /// 128 bits totp-rs's checked constructor asks for and must still verify, and the
    /// issuer (`service_id`, no ':' by the config check) is not re-checked. Digits are
    /// 6..=8 (config). Skew 0: the window is ours.
    fn totp(&self, secret: &[u8], issuer: Option<String>, account: String) -> totp_rs::TOTP {
        let algorithm = match self.algorithm {
            Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
            Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
            Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
        };
        totp_rs::TOTP::new_unchecked(
            algorithm,
            self.digits,
            0,
            self.period,
            secret.to_vec(),
            issuer,
            account,
        )
    }

    /// The `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER…` URI a token app adds the
    /// token from (the setup reply and its QR code), formatted by totp-rs's `get_url()`.
    /// The label and the `issuer` parameter are percent-encoded as UTF-8 with RFC 3986's
    /// unreserved characters kept. Parameters at the Key URI Format's defaults are left
    /// out (`digits=6`, `algorithm=SHA1`, `period=30`); otpd's 60-second period is always
    /// named. The URI carries the secret: it is shown to the customer, never logged.
    pub fn otpauth_uri(&self, secret: &[u8], issuer: &str, account: &str) -> String {
        self.totp(secret, Some(issuer.to_owned()), account.to_owned())
            .get_url()
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

    /// An otpauth URI taken apart by hand (not by totp-rs): the type, the decoded label and
    /// the decoded parameters in their order.
    fn parse_uri(uri: &str) -> (String, String, Vec<(String, String)>) {
        fn unpct(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).expect("UTF-8")
        }
        let rest = uri.strip_prefix("otpauth://").expect("otpauth scheme");
        let (kind, rest) = rest.split_once('/').expect("type");
        let (label, query) = rest.split_once('?').expect("query");
        assert!(
            label
                .bytes()
                .chain(query.bytes())
                .all(|b| b.is_ascii_graphic()),
            "{uri}"
        );
        let params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_string(), unpct(v))
            })
            .collect();
        (kind.to_string(), unpct(label), params)
    }

    fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
        let mut found = params.iter().filter(|(k, _)| k == key);
        let v = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{key} once");
        v
    }

    /// The default token (SHA-1, 6 digits, 60 s): `period=60` is named, the label is
    /// `issuer:account` and the `issuer` parameter is there; SHA-1 and 6 digits are the
    /// Key URI Format's defaults and left out.
    #[test]
    fn otpauth_uri_of_the_default_token() {
        let p = OtpParams::default();
        let uri = p.otpauth_uri(SEED20, "EXAMPLE-BANK", "taro");
        assert_eq!(
            uri,
            "otpauth://totp/EXAMPLE-BANK:taro?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=EXAMPLE-BANK&period=60"
        );
        let (kind, label, params) = parse_uri(&uri);
        assert_eq!(
            (kind.as_str(), label.as_str()),
            ("totp", "EXAMPLE-BANK:taro")
        );
        assert_eq!(param(&params, "issuer"), Some("EXAMPLE-BANK"));
        assert_eq!(param(&params, "period"), Some("60"));
        assert_eq!(param(&params, "digits").unwrap_or("6"), "6");
        assert_eq!(param(&params, "algorithm").unwrap_or("SHA1"), "SHA1");
    }

    /// Other settings are named; 30 s is the format's default period and left out.
    #[test]
    fn otpauth_uri_names_settings_other_than_the_defaults() {
        for (alg, digits, period) in [
            (Algorithm::SHA256, 8, 30),
            (Algorithm::SHA512, 7, 90),
            (Algorithm::SHA1, 6, 30),
        ] {
            let p = OtpParams {
                algorithm: alg,
                digits,
                period,
                window: 1,
            };
            let (_, _, params) = parse_uri(&p.otpauth_uri(SEED32, "B", "a"));
            assert_eq!(param(&params, "algorithm").unwrap_or("SHA1"), alg.name());
            assert_eq!(param(&params, "digits").unwrap_or("6"), digits.to_string());
            assert_eq!(param(&params, "period").unwrap_or("30"), period.to_string());
        }
    }

    /// A Japanese issuer with reserved characters, and an e-mail-like account, come back
    /// unchanged from the label and the `issuer` parameter, by hand and by totp-rs's own
    /// parser; the secret too.
    #[test]
    fn otpauth_uri_round_trips_a_japanese_issuer() {
        let p = OtpParams::default();
        let issuer = "みずほ銀行 A&B/東京+?=#%";
        let account = "taro.yamada@example.jp";
        let uri = p.otpauth_uri(SEED20, issuer, account);
        // The same bytes as Python's `urllib.parse.quote(s, safe="-._~")`.
        let enc = "%E3%81%BF%E3%81%9A%E3%81%BB%E9%8A%80%E8%A1%8C%20A%26B%2F%E6%9D%B1%E4%BA%AC%2B%3F%3D%23%25";
        assert_eq!(
            uri,
            format!(
                "otpauth://totp/{enc}:taro.yamada%40example.jp\
                 ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer={enc}&period=60"
            )
        );
        let (_, label, params) = parse_uri(&uri);
        assert_eq!(label, format!("{issuer}:{account}"));
        assert_eq!(param(&params, "issuer"), Some(issuer));
        let back = totp_rs::TOTP::from_url_unchecked(&uri).expect("totp-rs parses it");
        assert_eq!(back.issuer.as_deref(), Some(issuer));
        assert_eq!(back.account_name, account);
        assert_eq!((back.step, back.digits), (60, 6));
        assert_eq!(back.secret, SEED20);
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

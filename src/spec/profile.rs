//! Network profiles: bandwidth and round latency, to turn bits and rounds into an
//! estimated time. Two estimates use them (`cost::Estimate`):
//!
//! - one link (`seconds`): `rounds * rtt + total bits / bandwidth`. Every round waits
//!   one round trip and all traffic shares one link, as when the three parties run on
//!   one machine (the paper's setting) or behind one shared uplink.
//! - parties apart (`seconds_apart`): `rounds * rtt + the sum over layers of the
//!   layer's busiest sender's bits / bandwidth`, for three machines that send side by
//!   side. Within a layer it leaves out that parties take turns between steps (which
//!   adds time) and that a party sending to both peers at once has two links (which
//!   saves it); on three processes with each directed link emulated at the profile's
//!   rate the two nearly cancel (docs/performance.md, "Three parties over TCP").

use crate::error::{Error, Result};
use crate::spec::{parse_toml, read_text};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip_deserializing)]
    pub name: String,
    /// Megabits (10^6 bits) per second.
    pub bandwidth_mbps: f64,
    /// Time one round costs, in milliseconds (a round trip).
    pub rtt_ms: f64,
}

impl Profile {
    pub fn seconds(&self, rounds: u64, bits: u64) -> f64 {
        rounds as f64 * self.rtt_ms / 1e3 + bits as f64 / (self.bandwidth_mbps * 1e6)
    }
}

/// The shipped profiles: `lan` (10 Gbit/s, 0.2 ms) and `wan` (100 Mbit/s, 40 ms).
pub fn builtin() -> Vec<Profile> {
    vec![
        Profile { name: "lan".into(), bandwidth_mbps: 10_000.0, rtt_ms: 0.2 },
        Profile { name: "wan".into(), bandwidth_mbps: 100.0, rtt_ms: 40.0 },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfiles {
    profile: BTreeMap<String, Profile>,
}

/// The built-in profiles, overridden or extended by `[profile.NAME]` tables in `path`.
pub fn load(path: &Path) -> Result<Vec<Profile>> {
    let raw: RawProfiles = parse_toml(path, &read_text(path)?)?;
    merge(path, raw.profile)
}

/// The built-in profiles, overridden or extended by `profiles` (from `[profile.NAME]`
/// tables of `path`, named in errors).
pub fn merge(path: &Path, extra: BTreeMap<String, Profile>) -> Result<Vec<Profile>> {
    let mut profiles = builtin();
    for (name, mut p) in extra {
        if !(p.bandwidth_mbps > 0.0 && p.rtt_ms >= 0.0 && p.bandwidth_mbps.is_finite() && p.rtt_ms.is_finite()) {
            return Err(Error::invalid(path, Some(format!("[profile.{name}]")), "bandwidth_mbps must be > 0 and rtt_ms >= 0"));
        }
        p.name = name;
        match profiles.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => profiles.push(p),
        }
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_megabyte_on_wan_costs_eighty_ms_plus_rounds() {
        let wan = &builtin()[1];
        let s = wan.seconds(10, 8_000_000);
        assert!((s - (0.4 + 0.08)).abs() < 1e-12, "{s}");
    }

    #[test]
    fn a_file_overrides_and_adds_profiles() {
        let dir = std::env::temp_dir().join(format!("explore-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.toml");
        std::fs::write(&f, "[profile.wan]\nbandwidth_mbps = 50\nrtt_ms = 80\n[profile.sat]\nbandwidth_mbps = 20\nrtt_ms = 600\n").unwrap();
        let p = load(&f).unwrap();
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["lan", "wan", "sat"]);
        assert_eq!(p[1].rtt_ms, 80.0);
        std::fs::write(&f, "[profile.x]\nbandwidth_mbps = 0\nrtt_ms = 1\n").unwrap();
        assert!(load(&f).unwrap_err().to_string().contains("[profile.x]"));
    }
}

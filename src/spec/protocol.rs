//! Protocol tables: what each action costs in rounds and bits per party. Counts of
//! actions come from `actions`; this module only prices them.

use super::PerParty;
use crate::error::{Error, Result};
use crate::spec::{parse_toml, read_text};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The built-in table (SecureNN as the paper's Table 1 prices it).
pub const SECURENN_TOML: &str = include_str!("../../protocols/securenn.toml");

/// Every shipped table, by name: SecureNN first (the default), then the protocols
/// `explore compare` sets beside it.
pub const BUILTIN: [(&str, &str); 4] = [
    ("securenn", SECURENN_TOML),
    ("falcon", include_str!("../../protocols/falcon.toml")),
    ("crypten-ttp", include_str!("../../protocols/crypten-ttp.toml")),
    ("delphi", include_str!("../../protocols/delphi.toml")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ConvMasking {
    /// Open the im2col matrix: x = output positions * f^2 * in channels.
    Im2col,
    /// Open the input tensor: x = input elements.
    Tensor,
}

impl std::fmt::Display for ConvMasking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvMasking::Im2col => "im2col",
            ConvMasking::Tensor => "tensor",
        })
    }
}

/// Ring elements a party sends for a product, per element of X, Y and Z.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductTerms {
    #[serde(default)]
    pub x: u64,
    #[serde(default)]
    pub y: u64,
    #[serde(default)]
    pub z: u64,
}

/// Bits a party sends per value: multiples of l and of l log p, plus a constant
/// number of bits (for costs not in ring units, such as garbled tables or bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitTerms {
    #[serde(default)]
    pub l: u64,
    #[serde(default)]
    pub l_logp: u64,
    #[serde(default)]
    pub bits: u64,
}

/// An action's price: rounds, dependency depth, and what each party sends online
/// and (for protocols with preprocessing) offline, before the input is known.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawPriced<T>", bound(deserialize = "T: Deserialize<'de> + Default"))]
pub struct Priced<T> {
    pub rounds: u64,
    pub depth: u64,
    pub online: PerParty<T>,
    pub offline: PerParty<T>,
}

/// `Priced` as tables write it: the online parties inline, `offline = { p0 = .. }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPriced<T> {
    rounds: u64,
    depth: u64,
    #[serde(default)]
    p0: T,
    #[serde(default)]
    p1: T,
    #[serde(default)]
    p2: T,
    #[serde(default)]
    offline: PerParty<T>,
}

impl<T> From<RawPriced<T>> for Priced<T> {
    fn from(r: RawPriced<T>) -> Priced<T> {
        Priced { rounds: r.rounds, depth: r.depth, online: PerParty([r.p0, r.p1, r.p2]), offline: r.offline }
    }
}

/// Nanoseconds of local computation per unit of each action, all parties together
/// on one core (the simulator runs the three parties in one process).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    /// Per multiply-accumulate of a Beaver product (the three parties' local products).
    pub ns_per_mac: f64,
    /// Per element of a Beaver product's operands and result (x + y + z): drawing the
    /// masks, masking, opening and hashing E and F, adding up the shares. A fully
    /// connected layer has one multiply-accumulate per weight, so this term, not the
    /// products, sets its time. Absent in tables from before it: 0.
    #[serde(default)]
    pub ns_per_element: f64,
    pub ns_per_drelu: f64,
    pub ns_per_mul: f64,
    pub ns_per_truncate: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolTable {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub ring_bits: u64,
    pub field_bits: u64,
    pub conv_masking: ConvMasking,
    pub product: Priced<ProductTerms>,
    pub drelu: Priced<UnitTerms>,
    pub mul: Priced<UnitTerms>,
    pub truncate: Priced<UnitTerms>,
    /// A whole ReLU as one protocol, for protocols whose ReLU is a single circuit
    /// (Delphi's garbled ReLU): when set, an unshared ReLU (one decision per
    /// activation, gating it) is priced as one `relu` instead of a DReLU and a Mul.
    /// Shared ReLUs still pay a DReLU per group and a Mul per activation.
    #[serde(default)]
    pub relu: Option<Priced<UnitTerms>>,
    /// One comparison step of max pooling, per window (SecureNN Algorithm 9: a window
    /// of n values takes n - 1 steps one after another). Tables of protocols that
    /// publish no max pooling cost leave it out, and networks with max pooling are
    /// then refused under them ("not priced") rather than priced by a guess.
    #[serde(default)]
    pub maxpool: Option<Priced<UnitTerms>>,
    /// Local computation per action, for the time model's compute term (measured
    /// by `explore calibrate`); without it estimates count only the network.
    #[serde(default)]
    pub compute: Option<Compute>,
    /// Where the table came from ("built-in" or a path); not part of the file.
    #[serde(skip)]
    pub source: String,
}

impl ProtocolTable {
    pub fn securenn() -> ProtocolTable {
        Self::builtin("securenn").expect("SecureNN is built in")
    }

    /// A shipped table by name (see `BUILTIN`).
    pub fn builtin(name: &str) -> Option<ProtocolTable> {
        let (_, text) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        // The built-in tables are checked by a unit test; they cannot fail to parse.
        let mut t = Self::parse(Path::new(&format!("protocols/{name}.toml")), text).expect("built-in table parses");
        t.source = "built-in".into();
        Some(t)
    }

    /// The table in `path`, the built-in table of that name when no such file
    /// exists (`--protocol falcon`), or the built-in SecureNN table without one.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<ProtocolTable> {
        match path {
            None => Ok(Self::securenn()),
            Some(p) if !p.exists() => p.to_str().and_then(Self::builtin).map_or_else(|| Self::load(p), Ok),
            Some(p) => Self::load(p),
        }
    }

    pub fn load(path: &Path) -> Result<ProtocolTable> {
        let mut t = Self::parse(path, &read_text(path)?)?;
        t.source = path.display().to_string();
        Ok(t)
    }

    pub fn parse(path: &Path, text: &str) -> Result<ProtocolTable> {
        let t: ProtocolTable = parse_toml(path, text)?;
        if t.ring_bits == 0 || t.field_bits == 0 {
            return Err(Error::invalid(path, None, "ring_bits and field_bits must be at least 1"));
        }
        if let Some(c) = &t.compute
            && ![c.ns_per_mac, c.ns_per_element, c.ns_per_drelu, c.ns_per_mul, c.ns_per_truncate].iter().all(|v| v.is_finite() && *v >= 0.0)
        {
            return Err(Error::invalid(path, Some("[compute]".into()), "every ns_per_* must be a finite number >= 0"));
        }
        Ok(ProtocolTable { source: PathBuf::from(path).display().to_string(), ..t })
    }

    /// Bits each party sends online for one product with operand sizes x, y, z.
    pub fn product_bits(&self, x: u64, y: u64, z: u64) -> [u64; 3] {
        self.product.online.0.map(|t| self.product_term(t, x, y, z))
    }

    /// Bits each party sends offline for the same product.
    pub fn product_offline_bits(&self, x: u64, y: u64, z: u64) -> [u64; 3] {
        self.product.offline.0.map(|t| self.product_term(t, x, y, z))
    }

    fn product_term(&self, t: ProductTerms, x: u64, y: u64, z: u64) -> u64 {
        (t.x * x + t.y * y + t.z * z) * self.ring_bits
    }

    /// Bits each party sends online for `count` values of a per-value action.
    pub fn unit_bits(&self, price: &Priced<UnitTerms>, count: u64) -> [u64; 3] {
        price.online.0.map(|t| self.unit_term(t) * count)
    }

    /// Bits each party sends offline for the same.
    pub fn unit_offline_bits(&self, price: &Priced<UnitTerms>, count: u64) -> [u64; 3] {
        price.offline.0.map(|t| self.unit_term(t) * count)
    }

    fn unit_term(&self, t: UnitTerms) -> u64 {
        t.l * self.ring_bits + t.l_logp * self.ring_bits * self.field_bits + t.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn securenn_table_gives_table1_prices() {
        let t = ProtocolTable::securenn();
        let drelu: u64 = t.unit_bits(&t.drelu, 1).iter().sum();
        assert_eq!(drelu, 83 * 64, "DReLU = (8 log p + 19) l");
        assert_eq!(t.unit_bits(&t.drelu, 1), [1280, 1280, 2752]);
        let mul: u64 = t.unit_bits(&t.mul, 1).iter().sum();
        assert_eq!(mul, 5 * 64);
        // Linear_{m,n,v} = (2mn + 2nv + mv) l, here m = 2, n = 3, v = 4.
        let lin: u64 = t.product_bits(6, 12, 8).iter().sum();
        assert_eq!(lin, (12 + 24 + 8) * 64);
        assert_eq!((t.drelu.rounds + t.mul.rounds, t.product.rounds), (10, 2));
        assert_eq!(t.source, "built-in");
        // Maxpool, per step: a DReLU and two SelectShares, 93 l bits, 9 rounds (spec 1.11).
        let step = t.maxpool.as_ref().unwrap();
        assert_eq!((t.unit_bits(step, 1).iter().sum::<u64>(), step.rounds, step.depth), (93 * 64, 9, 9));
    }

    #[test]
    fn every_builtin_table_parses_under_its_name() {
        for (name, _) in BUILTIN {
            assert_eq!(ProtocolTable::builtin(name).unwrap().name, name);
        }
    }

    #[test]
    fn falcon_and_crypten_per_value_prices_match_the_spec() {
        // Falcon (l = 32): DReLU 3 l + 6 l log p = 1,632 bits plus the opened masked bit
        // (3 x 8 bits); ReLU adds a Mul of 3 l: 1,752 bits, 10 rounds.
        let f = ProtocolTable::builtin("falcon").unwrap();
        let drelu: u64 = f.unit_bits(&f.drelu, 1).iter().sum();
        let mul: u64 = f.unit_bits(&f.mul, 1).iter().sum();
        assert_eq!((drelu, mul, drelu + mul), (1656, 96, 1752));
        assert_eq!(f.drelu.rounds + f.mul.rounds, 10);
        // CrypTen with a trusted dealer: ReLU about 3,712 bits online (58 l), 9 rounds.
        let c = ProtocolTable::builtin("crypten-ttp").unwrap();
        let relu: u64 = c.unit_bits(&c.drelu, 1).iter().sum::<u64>() + c.unit_bits(&c.mul, 1).iter().sum::<u64>();
        assert_eq!(relu, 58 * 64);
        assert_eq!(c.drelu.rounds + c.mul.rounds, 9);
        assert_eq!(c.conv_masking, ConvMasking::Tensor);
    }

    #[test]
    fn a_compute_section_without_ns_per_element_reads_as_zero() {
        // Tables calibrated before the per-element term still load.
        let text = format!("{SECURENN_TOML}\n[compute]\nns_per_mac = 1\nns_per_drelu = 2\nns_per_mul = 3\nns_per_truncate = 4\n");
        let c = ProtocolTable::parse(Path::new("t.toml"), &text).unwrap().compute.unwrap();
        assert_eq!((c.ns_per_mac, c.ns_per_element), (1.0, 0.0));
        let negative = text.replace("ns_per_mac = 1", "ns_per_mac = 1\nns_per_element = -1");
        let e = ProtocolTable::parse(Path::new("t.toml"), &negative).unwrap_err().to_string();
        assert!(e.contains("[compute]") && e.contains("t.toml"), "{e}");
    }

    #[test]
    fn unknown_keys_in_a_table_are_errors() {
        let bad = SECURENN_TOML.replace("[mul]\nrounds = 2", "[mul]\nround = 2");
        let e = ProtocolTable::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("t.toml: line"), "{e}");
    }
}

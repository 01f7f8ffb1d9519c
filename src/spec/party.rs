//! One value per party of SecureNN: P0 and P1 hold the shares, P2 helps. Price
//! tables give it as `{ p0 = .., p1 = .., p2 = .. }` (missing parties 0); reports
//! write it as the list `[P0, P1, P2]`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PerParty<T>(pub [T; 3]);

impl<T: Copy> PerParty<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> PerParty<U> {
        PerParty(self.0.map(f))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T: Copy + std::ops::Add<Output = T>> PerParty<T> {
    /// The three parties together.
    pub fn sum(self) -> T {
        self.0[0] + self.0[1] + self.0[2]
    }
}

impl<T: Copy + std::ops::Add<Output = T>> std::ops::Add for PerParty<T> {
    type Output = PerParty<T>;
    fn add(self, o: PerParty<T>) -> PerParty<T> {
        PerParty([self.0[0] + o.0[0], self.0[1] + o.0[1], self.0[2] + o.0[2]])
    }
}

impl<T: Copy + std::ops::AddAssign> std::ops::AddAssign for PerParty<T> {
    fn add_assign(&mut self, o: PerParty<T>) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }
}

impl<T> std::ops::Index<usize> for PerParty<T> {
    type Output = T;
    fn index(&self, party: usize) -> &T {
        &self.0[party]
    }
}

impl<T> std::ops::IndexMut<usize> for PerParty<T> {
    fn index_mut(&mut self, party: usize) -> &mut T {
        &mut self.0[party]
    }
}

impl<T: PartialEq> PartialEq<[T; 3]> for PerParty<T> {
    fn eq(&self, other: &[T; 3]) -> bool {
        self.0 == *other
    }
}

impl<T: Serialize> Serialize for PerParty<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for PerParty<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PerParty<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table<T> {
            #[serde(default)]
            p0: T,
            #[serde(default)]
            p1: T,
            #[serde(default)]
            p2: T,
        }
        let t = Table::<T>::deserialize(d)?;
        Ok(PerParty([t.p0, t.p1, t.p2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_by_name_and_reports_write_a_list() {
        let p: PerParty<u64> = toml::from_str("p0 = 1\np2 = 3\n").unwrap();
        assert_eq!(p, [1, 0, 3]);
        assert_eq!(serde_json::to_string(&p).unwrap(), "[1,0,3]");
        assert_eq!((p + p).sum(), 8);
        assert!(toml::from_str::<PerParty<u64>>("p3 = 1\n").is_err());
    }
}

//! Where the simulated network lives: the cloud regions of a public, measured
//! round-trip-time table, and the RTT between any two of them.
//!
//! Two tables are embedded at build time:
//!
//! - `data/azure_rtt_p95.csv`: Microsoft's published "Azure network round-trip
//!   latency statistics" (dataset of July 30, 2026, CC BY 4.0, source and method in
//!   the file's header): the 95th-percentile round trip between every ordered pair of
//!   54 regions over 30 days, probed every minute.
//! - `data/regions.csv`: each region's city and that city's coordinates, used only
//!   for the providers' planar coordinates and to compare the measurements with the
//!   speed of light in fibre.
//!
//! ```text
//!  rtt(a, b) = (measured(a → b) + measured(b → a)) / 2      a ≠ b
//!  rtt(a, a) = SAME_REGION_RTT                              (not measured: 2 ms)
//! ```
//!
//! The two directions of a pair differ by 1 ms at the median (54 ms at most), so the
//! mean keeps links symmetric without moving any pair far from its measurements.

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;

/// The embedded region table.
const REGIONS_CSV: &str = include_str!("../data/regions.csv");
/// The embedded measured RTT matrix.
const RTT_CSV: &str = include_str!("../data/azure_rtt_p95.csv");

/// The RTT between two nodes in the same region. The table has no diagonal; 2 ms
/// (a modelling assumption) stands for two data centres of one metro area.
pub const SAME_REGION_RTT: Duration = Duration::from_millis(2);

/// How much longer than the great circle at 2/3 c the measured round trips are: the
/// median, over the table's pairs more than 500 km apart, of measured RTT / fibre
/// great-circle RTT (1.81 in the July 2026 table; a test keeps this constant within
/// 5 % of the table). Used to scale the providers' planar coordinates.
pub const ROUTE_FACTOR: f64 = 1.8;

/// Speed of light in vacuum, km/s.
const C_KM_PER_S: f64 = 299_792.458;
/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6_371.0;

/// Index of a region in [`Cities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CityId(pub usize);

/// One region: its name in the RTT table, its city and the city's coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct City {
    /// The region's name as in the RTT table ("West Europe").
    pub name: String,
    /// The city the region is in or nearest to ("Amsterdam").
    pub city: String,
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// A malformed region or RTT table.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TableError {
    /// A line of the region table is not `region,city,lat,lon`.
    #[error("region table line {line}: {reason}")]
    Region {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The RTT matrix does not cover the regions exactly.
    #[error("RTT table: {0}")]
    Rtt(String),
}

/// The region table with its symmetric RTT matrix.
#[derive(Clone, Debug)]
pub struct Cities {
    cities: Vec<City>,
    rtt_us: Vec<u64>,
}

impl Cities {
    /// The embedded tables (`data/regions.csv`, `data/azure_rtt_p95.csv`).
    pub fn embedded() -> Self {
        // Both tables are compiled in and checked by `embedded_tables_parse`.
        Self::parse(REGIONS_CSV, RTT_CSV).expect("embedded region and RTT tables are well formed")
    }

    /// Parses a `region,city,lat,lon` table and a measured RTT matrix (first column
    /// the source region, a header row of destination regions, milliseconds, empty
    /// diagonal) that must cover exactly the same regions. Lines starting with `#`
    /// are comments.
    pub fn parse(regions: &str, rtt_ms: &str) -> Result<Self, TableError> {
        let mut cities = Vec::new();
        for (n, line) in data_lines(regions).skip(1) {
            let region = |reason: &str| TableError::Region {
                line: n,
                reason: reason.to_string(),
            };
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [name, city, lat, lon] = f[..] else {
                return Err(region("expected region,city,lat,lon"));
            };
            let lat: f64 = lat.parse().map_err(|_| region("latitude"))?;
            let lon: f64 = lon.parse().map_err(|_| region("longitude"))?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(region("coordinates out of range"));
            }
            cities.push(City {
                name: name.to_string(),
                city: city.to_string(),
                lat,
                lon,
            });
        }
        let index: BTreeMap<&str, usize> = cities
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        if index.len() != cities.len() {
            return Err(TableError::Rtt("a region is listed twice".into()));
        }
        let find = |name: &str| {
            index
                .get(name)
                .copied()
                .ok_or_else(|| TableError::Rtt(format!("unknown region {name:?}")))
        };
        let mut lines = data_lines(rtt_ms);
        let (_, header) = lines
            .next()
            .ok_or_else(|| TableError::Rtt("no header".into()))?;
        let columns = header
            .split(',')
            .skip(1)
            .map(|c| find(c.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let n = cities.len();
        // measured[a * n + b]: a → b in ms, if present.
        let mut measured: Vec<Option<u64>> = vec![None; n * n];
        let mut rows = 0;
        for (line, text) in lines {
            let mut f = text.split(',').map(str::trim);
            let from = find(f.next().unwrap_or_default())?;
            let cells: Vec<&str> = f.collect();
            if cells.len() != columns.len() {
                return Err(TableError::Rtt(format!(
                    "line {line}: wrong number of cells"
                )));
            }
            for (&to, cell) in columns.iter().zip(cells) {
                if to == from || cell.is_empty() {
                    continue;
                }
                let ms = cell.parse().map_err(|_| {
                    TableError::Rtt(format!("line {line}: {cell:?} is not a number"))
                })?;
                measured[from * n + to] = Some(ms);
            }
            rows += 1;
        }
        if rows != n || columns.len() != n {
            return Err(TableError::Rtt(format!(
                "{rows} rows and {} columns for {n} regions",
                columns.len()
            )));
        }
        let mut rtt_us = vec![SAME_REGION_RTT.as_micros() as u64; n * n];
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let (Some(ab), Some(ba)) = (measured[a * n + b], measured[b * n + a]) else {
                    return Err(TableError::Rtt(format!(
                        "no measurement between {} and {}",
                        cities[a].name, cities[b].name
                    )));
                };
                // The mean of the two directions, in µs: (ab + ba) / 2 ms.
                rtt_us[a * n + b] = (ab + ba) * 500;
            }
        }
        Ok(Self { cities, rtt_us })
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.cities.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }

    /// The region at `id`.
    pub fn city(&self, id: CityId) -> &City {
        &self.cities[id.0]
    }

    /// Round-trip time between two regions.
    pub fn rtt(&self, a: CityId, b: CityId) -> Duration {
        Duration::from_micros(self.rtt_us[a.0 * self.cities.len() + b.0])
    }

    /// One-way latency between two regions: half the RTT (what a simulated link gets).
    pub fn one_way(&self, a: CityId, b: CityId) -> Duration {
        self.rtt(a, b) / 2
    }

    /// `count` regions spread over the table: from `offset`, stepping by the first
    /// step ≥ len/3 that is coprime with len, so that a handful of validators do not
    /// all land in the neighbouring rows of one continent (the table is alphabetical).
    pub fn spread(&self, offset: usize, count: usize) -> Vec<CityId> {
        let n = self.len().max(1);
        let step = (n / 3..).find(|&s| s > 0 && gcd(s, n) == 1).unwrap_or(1);
        (0..count)
            .map(|i| CityId((offset + i * step) % n))
            .collect()
    }
}

/// The non-comment, non-blank lines of a table with their 1-based line numbers.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Great-circle distance between two regions' cities in km (haversine).
pub fn distance_km(a: &City, b: &City) -> f64 {
    let (la, lb) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lb - la;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The round trip along the great circle at the speed of light in fibre (2/3 c):
/// the physical floor a measured RTT is compared with.
pub fn fibre_rtt(a: &City, b: &City) -> Duration {
    Duration::from_secs_f64(2.0 * distance_km(a, b) / (C_KM_PER_S * 2.0 / 3.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: &Cities, name: &str) -> CityId {
        CityId(
            (0..c.len())
                .find(|&i| c.city(CityId(i)).name == name)
                .unwrap(),
        )
    }

    #[test]
    fn embedded_tables_parse() {
        let c = Cities::embedded();
        let regions = data_lines(REGIONS_CSV).count() - 1;
        assert_eq!(c.len(), regions, "every region row parses");
        assert_eq!(c.len(), 54);
    }

    #[test]
    fn rtts_are_the_measured_means_and_symmetric() {
        let c = Cities::embedded();
        for i in 0..c.len() {
            assert_eq!(c.rtt(CityId(i), CityId(i)), SAME_REGION_RTT);
            for j in 0..c.len() {
                assert_eq!(c.rtt(CityId(i), CityId(j)), c.rtt(CityId(j), CityId(i)));
            }
        }
        // Spot values of the published table (row → column, ms).
        let ms = |a: &str, b: &str| c.rtt(id(&c, a), id(&c, b)).as_micros();
        assert_eq!(ms("UK South", "East US"), 80_000); // 80 and 80
        assert_eq!(ms("West Europe", "Australia East"), 282_000); // 282 and 282
        assert_eq!(ms("Japan East", "South Africa West"), 311_000); // 312 and 310
        assert_eq!(ms("Belgium Central", "Southeast Asia"), 207_000); // 186 and 228
    }

    #[test]
    fn no_measurement_beats_light_in_fibre_and_the_route_factor_is_the_median() {
        let c = Cities::embedded();
        let mut inflation = Vec::new();
        for i in 0..c.len() {
            for j in i + 1..c.len() {
                let (a, b) = (c.city(CityId(i)), c.city(CityId(j)));
                let floor = fibre_rtt(a, b);
                let rtt = c.rtt(CityId(i), CityId(j));
                assert!(rtt >= floor, "{} – {}: {rtt:?} < {floor:?}", a.name, b.name);
                if distance_km(a, b) > 500.0 {
                    inflation.push(rtt.as_secs_f64() / floor.as_secs_f64());
                }
            }
        }
        inflation.sort_by(f64::total_cmp);
        let median = inflation[inflation.len() / 2];
        assert!(
            (median / ROUTE_FACTOR - 1.0).abs() < 0.05,
            "median inflation {median:.2} vs ROUTE_FACTOR {ROUTE_FACTOR}"
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let regions = "region,city,lat,lon\nA,X,0,0\nB,Y,10,10\n";
        let good = "Source,A,B\nA,,20\nB,22,\n";
        let c = Cities::parse(regions, good).unwrap();
        assert_eq!(c.rtt(CityId(0), CityId(1)), Duration::from_millis(21));
        for bad in [
            "Source,A,B\nA,,20\n",          // a row missing
            "Source,A,B\nA,,20\nB,,\n",     // a direction missing
            "Source,A,B\nA,,x\nB,22,\n",    // not a number
            "Source,A,C\nA,,20\nC,22,\n",   // unknown region
            "Source,A,B\nA,,20,1\nB,22,\n", // too many cells
        ] {
            assert!(
                matches!(Cities::parse(regions, bad), Err(TableError::Rtt(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Cities::parse("region,city,lat,lon\nA,X,95,0\n", good),
            Err(TableError::Region { line: 2, .. })
        ));
    }

    #[test]
    fn spread_visits_every_region_once_per_lap() {
        let c = Cities::embedded();
        let mut ids = c.spread(5, c.len());
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), c.len());
        // Four validators land on at least three continents' worth of distance.
        let four = c.spread(0, 4);
        let far = four
            .iter()
            .flat_map(|&a| four.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| c.rtt(a, b) > Duration::from_millis(100))
            .count();
        assert!(far >= 4, "{four:?}");
    }
}

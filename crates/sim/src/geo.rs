//! Where the simulated network lives: a table of cities and the round-trip time
//! between any two of them.
//!
//! The table (`data/cities.csv`, embedded at build time) holds each city's
//! coordinates. RTTs are **computed, not measured**:
//!
//! ```text
//!  d   = great-circle distance (haversine, Earth radius 6,371 km)
//!  rtt = 2 · d / (2/3 · c) · ROUTE_FACTOR + RTT_FLOOR
//! ```
//!
//! Light in fibre travels at about 2/3 c; real routes are longer than the great
//! circle and cross routers, so one-way path length is scaled by
//! [`ROUTE_FACTOR`] = 1.5 (a modelling assumption, not a measured value: Singla
//! et al., "The Internet at the Speed of Light", HotNets 2014, find measured
//! pings several times the c-latency; 1.5 over fibre is 2.25× c, on the
//! optimistic side).
//! [`RTT_FLOOR`] adds last-mile and stack time, and is the RTT inside one city.

use std::time::Duration;

/// The embedded city table.
const CITIES_CSV: &str = include_str!("../data/cities.csv");

/// Path inflation over the great circle (see the module docs).
pub const ROUTE_FACTOR: f64 = 1.5;
/// Round-trip time added to every pair (last mile, stacks); the RTT within a city.
pub const RTT_FLOOR: Duration = Duration::from_millis(2);

/// Speed of light in vacuum, km/s.
const C_KM_PER_S: f64 = 299_792.458;
/// Mean Earth radius, km.
const EARTH_RADIUS_KM: f64 = 6_371.0;

/// Index of a city in [`Cities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CityId(pub usize);

/// One city: its name and coordinates in degrees.
#[derive(Clone, Debug, PartialEq)]
pub struct City {
    /// The city's name as in the table.
    pub name: String,
    /// Latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// The city table with its RTT matrix.
#[derive(Clone, Debug)]
pub struct Cities {
    cities: Vec<City>,
    rtt_us: Vec<u64>,
}

impl Cities {
    /// The embedded table (`data/cities.csv`).
    pub fn embedded() -> Self {
        Self::parse(CITIES_CSV)
    }

    /// Parses a `city,lat,lon` table (lines starting with `#` and the header skipped;
    /// malformed lines are skipped too, so the embedded table is checked by a test).
    fn parse(text: &str) -> Self {
        let cities: Vec<City> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty() && !l.starts_with("city,"))
            .filter_map(|l| {
                let mut f = l.split(',');
                let name = f.next()?.trim().to_string();
                let lat = f.next()?.trim().parse().ok()?;
                let lon = f.next()?.trim().parse().ok()?;
                Some(City { name, lat, lon })
            })
            .collect();
        let n = cities.len();
        let mut rtt_us = vec![0; n * n];
        for i in 0..n {
            for j in 0..n {
                rtt_us[i * n + j] = model_rtt(&cities[i], &cities[j]).as_micros() as u64;
            }
        }
        Self { cities, rtt_us }
    }

    /// Number of cities.
    pub fn len(&self) -> usize {
        self.cities.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }

    /// The city at `id`.
    pub fn city(&self, id: CityId) -> &City {
        &self.cities[id.0]
    }

    /// Round-trip time between two cities.
    pub fn rtt(&self, a: CityId, b: CityId) -> Duration {
        Duration::from_micros(self.rtt_us[a.0 * self.cities.len() + b.0])
    }

    /// One-way latency between two cities: half the RTT (what a simulated link gets).
    pub fn one_way(&self, a: CityId, b: CityId) -> Duration {
        self.rtt(a, b) / 2
    }
}

/// Great-circle distance between two cities in km (haversine).
pub fn distance_km(a: &City, b: &City) -> f64 {
    let (la, lb) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lb - la;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The model RTT between two cities (see the module docs).
pub fn model_rtt(a: &City, b: &City) -> Duration {
    let fibre_km_per_s = C_KM_PER_S * 2.0 / 3.0;
    let secs = 2.0 * distance_km(a, b) / fibre_km_per_s * ROUTE_FACTOR;
    Duration::from_secs_f64(secs) + RTT_FLOOR
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
    fn embedded_table_parses_every_line() {
        let c = Cities::embedded();
        let rows = CITIES_CSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .count();
        assert_eq!(c.len() + 1, rows, "every data row parses");
    }

    #[test]
    fn rtts_are_symmetric_and_plausible() {
        let c = Cities::embedded();
        for i in 0..c.len() {
            assert_eq!(c.rtt(CityId(i), CityId(i)), RTT_FLOOR);
            for j in 0..c.len() {
                assert_eq!(c.rtt(CityId(i), CityId(j)), c.rtt(CityId(j), CityId(i)));
            }
        }
        // London–New York is ~5,570 km: the model gives ~86 ms (measured pings ~70–80 ms).
        let ln = c.rtt(id(&c, "London"), id(&c, "New York")).as_millis();
        assert!((70..=100).contains(&ln), "London–New York {ln} ms");
        // Frankfurt–Sydney ~16,500 km: ~250 ms in the model (measured ~250–300 ms).
        let fs = c.rtt(id(&c, "Frankfurt"), id(&c, "Sydney")).as_millis();
        assert!((220..=300).contains(&fs), "Frankfurt–Sydney {fs} ms");
    }
}

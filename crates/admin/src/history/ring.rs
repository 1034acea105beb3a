//! A fixed number of samples, the oldest overwritten: sized once, never grown.

/// One sample of an upstream: 20 bytes, so 180 of them (15 minutes at 5 s) cost 3.6 KB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Wall-clock time of the sample, seconds since the Unix epoch.
    pub at_s: u32,
    /// Requests answered per second since the previous sample.
    pub rps: f32,
    /// Median and 99th percentile of those requests' durations, in ms; NaN with none.
    pub p50_ms: f32,
    pub p99_ms: f32,
    /// In flight and held at the sample, saturated at `u16::MAX` (a chart needs no more).
    pub in_flight: u16,
    pub held: u16,
}

#[derive(Debug)]
pub struct Ring {
    points: Box<[Point]>,
    /// Where the next point goes.
    next: usize,
    len: usize,
}

impl Ring {
    /// A ring of `capacity` points (at least one), allocated here once.
    pub fn new(capacity: usize) -> Ring {
        Ring {
            points: vec![Point::default(); capacity.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    pub fn push(&mut self, p: Point) {
        self.points[self.next] = p;
        self.next = (self.next + 1) % self.points.len();
        self.len = (self.len + 1).min(self.points.len());
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The points kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Point> {
        let cap = self.points.len();
        let start = (self.next + cap - self.len) % cap;
        (0..self.len).map(move |k| &self.points[(start + k) % cap])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u32) -> Point {
        Point {
            at_s: s,
            ..Point::default()
        }
    }

    #[test]
    fn keeps_the_newest_in_order_without_growing() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        r.push(at(1));
        r.push(at(2));
        assert_eq!(r.iter().map(|p| p.at_s).collect::<Vec<_>>(), [1, 2]);
        for s in 3..=7 {
            r.push(at(s));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.iter().map(|p| p.at_s).collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!(r.points.len(), 3, "never grows");
    }

    #[test]
    fn a_point_is_small() {
        assert_eq!(std::mem::size_of::<Point>(), 20);
    }
}

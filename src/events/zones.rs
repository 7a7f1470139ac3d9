//! Zones and masks: polygons in frame pixels, tested against a box's centre.

use geo::{Contains, LineString, Point, Polygon};

use super::config::ZoneConfig;

/// A frame's named zones and masked areas.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    named: Vec<(String, Polygon<f32>)>,
    masks: Vec<Polygon<f32>>,
}

fn polygon(points: &[[f32; 2]]) -> Polygon<f32> {
    Polygon::new(
        LineString::from(points.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>()),
        Vec::new(),
    )
}

/// The centre of `[x1, y1, x2, y2]`.
pub fn centre(b: &[f32; 4]) -> [f32; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

impl Zones {
    /// From the configuration (validated: every polygon has 3 points).
    pub fn new(zones: &[ZoneConfig], mask: &[Vec<[f32; 2]>]) -> Zones {
        Zones {
            named: zones
                .iter()
                .map(|z| (z.name.clone(), polygon(&z.points)))
                .collect(),
            masks: mask.iter().map(|m| polygon(m)).collect(),
        }
    }

    /// Whether a box's centre lies in a masked area.
    pub fn masked(&self, b: &[f32; 4]) -> bool {
        let [x, y] = centre(b);
        self.masks.iter().any(|m| m.contains(&Point::new(x, y)))
    }

    /// The zones a box's centre lies in, in configuration order.
    pub fn containing(&self, b: &[f32; 4]) -> Vec<String> {
        let [x, y] = centre(b);
        self.named
            .iter()
            .filter(|(_, p)| p.contains(&Point::new(x, y)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether any mask is configured.
    pub fn has_masks(&self) -> bool {
        !self.masks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_is_in_the_zones_its_centre_is_in() {
        let zones = Zones::new(
            &[
                ZoneConfig {
                    name: "left".into(),
                    points: vec![[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]],
                },
                ZoneConfig {
                    name: "triangle".into(),
                    points: vec![[0.0, 0.0], [200.0, 0.0], [0.0, 200.0]],
                },
            ],
            &[vec![
                [300.0, 300.0],
                [400.0, 300.0],
                [400.0, 400.0],
                [300.0, 400.0],
            ]],
        );
        assert_eq!(
            zones.containing(&[40.0, 40.0, 60.0, 60.0]),
            ["left", "triangle"]
        );
        // Centre (150, 20): right of `left`, inside the triangle.
        assert_eq!(zones.containing(&[140.0, 10.0, 160.0, 30.0]), ["triangle"]);
        // Centre (150, 150): beyond the triangle's hypotenuse.
        assert!(zones.containing(&[100.0, 100.0, 200.0, 200.0]).is_empty());
        // A box overlapping the mask but centred outside it is kept.
        assert!(zones.masked(&[320.0, 320.0, 380.0, 380.0]));
        assert!(!zones.masked(&[200.0, 320.0, 320.0, 380.0]));
    }
}

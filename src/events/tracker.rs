//! A multi-object tracker for one stream: ByteTrack's two-stage IoU
//! association over boxes predicted at constant velocity. Detections score
//! high enough to start tracks; weaker ones only keep tracks alive, so an
//! object whose score dips for a frame keeps its id.

use std::time::{Duration, SystemTime};

use crate::postprocess::merge::{overlap, MatchMetric};
use crate::postprocess::Detection;

/// How detections are matched to tracks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerSettings {
    /// Least IoU between a predicted box and a detection to match.
    pub match_iou: f32,
    /// Least score that starts a track.
    pub high_score: f32,
    /// Frames seen before a track is confirmed.
    pub min_frames: u32,
    /// Most tracks held.
    pub max_tracks: usize,
}

/// One tracked object.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Stable id while the object stays.
    pub id: u64,
    /// Label of the detections it matched.
    pub label: String,
    /// Class id.
    pub class_id: u32,
    /// Its box in the latest frame it was seen in.
    pub bbox: [f32; 4],
    /// Score in that frame.
    pub score: f32,
    /// Best score so far.
    pub best_score: f32,
    /// When it was first seen.
    pub first_seen: SystemTime,
    /// When it was last seen.
    pub last_seen: SystemTime,
    /// Frames it was seen in.
    pub frames: u64,
    /// Seen in `min_frames` frames: events are sent for it.
    pub confirmed: bool,
    /// Whether the latest inferred frame saw it.
    pub in_last_frame: bool,
    /// Centre velocity in pixels per second, smoothed.
    velocity: [f32; 2],
}

impl Track {
    /// Its box moved on to `at` at its velocity.
    fn predicted(&self, at: SystemTime) -> [f32; 4] {
        let dt = at
            .duration_since(self.last_seen)
            .unwrap_or_default()
            .as_secs_f32()
            .min(2.0);
        let [vx, vy] = self.velocity;
        let b = self.bbox;
        [
            b[0] + vx * dt,
            b[1] + vy * dt,
            b[2] + vx * dt,
            b[3] + vy * dt,
        ]
    }
}

/// What one frame did to a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Seen often enough to count, this frame.
    Confirmed(u64),
    /// Seen again (already confirmed).
    Seen(u64),
}

/// The tracks of one stream.
#[derive(Debug)]
pub struct Tracker {
    settings: TrackerSettings,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// Ids start at `first_id` (the daemon seeds it from the clock, so ids
    /// do not repeat across restarts).
    pub fn new(settings: TrackerSettings, first_id: u64) -> Tracker {
        Tracker {
            settings,
            tracks: Vec::new(),
            next_id: first_id,
        }
    }

    /// The tracks held.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// A track by id.
    pub fn get(&self, id: u64) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Matches one frame's detections (taken at `at`) to the tracks and
    /// starts tracks for strong unmatched ones. Unmatched tracks are kept;
    /// [`Tracker::expire`] ends them.
    pub fn update(&mut self, dets: &[Detection], at: SystemTime) -> Vec<Change> {
        let s = self.settings;
        let predicted: Vec<[f32; 4]> = self.tracks.iter().map(|t| t.predicted(at)).collect();
        let mut track_taken = vec![false; self.tracks.len()];
        let mut det_taken = vec![false; dets.len()];
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        // Stage 1: strong detections; stage 2: weak ones, to what is left.
        for strong in [true, false] {
            let mut candidates: Vec<(f32, usize, usize)> = Vec::new();
            for (d, det) in dets.iter().enumerate() {
                if det_taken[d] || (det.score >= s.high_score) != strong {
                    continue;
                }
                for (t, track) in self.tracks.iter().enumerate() {
                    if track_taken[t] || track.class_id != det.class_id {
                        continue;
                    }
                    let iou = overlap(MatchMetric::Iou, &predicted[t], &det.bbox);
                    if iou >= s.match_iou {
                        candidates.push((iou, t, d));
                    }
                }
            }
            // Greedy by IoU: on these sparse scenes it gives what the
            // Hungarian assignment does, without its cost.
            candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            for (_, t, d) in candidates {
                if !track_taken[t] && !det_taken[d] {
                    track_taken[t] = true;
                    det_taken[d] = true;
                    pairs.push((t, d));
                }
            }
        }
        for t in self.tracks.iter_mut() {
            t.in_last_frame = false;
        }
        let mut changes = Vec::new();
        for (t, d) in pairs {
            let (track, det) = (&mut self.tracks[t], &dets[d]);
            let dt = at
                .duration_since(track.last_seen)
                .unwrap_or_default()
                .as_secs_f32();
            if dt > 0.0 {
                let (old, new) = (centre(&track.bbox), centre(&det.bbox));
                let v = [(new[0] - old[0]) / dt, (new[1] - old[1]) / dt];
                // Smoothed: one noisy box does not throw the prediction off.
                track.velocity = if track.frames == 1 {
                    v
                } else {
                    [
                        0.5 * track.velocity[0] + 0.5 * v[0],
                        0.5 * track.velocity[1] + 0.5 * v[1],
                    ]
                };
            }
            track.bbox = det.bbox;
            track.score = det.score;
            track.best_score = track.best_score.max(det.score);
            track.last_seen = at;
            track.frames += 1;
            track.in_last_frame = true;
            if !track.confirmed && track.frames >= s.min_frames as u64 {
                track.confirmed = true;
                changes.push(Change::Confirmed(track.id));
            } else if track.confirmed {
                changes.push(Change::Seen(track.id));
            }
        }
        for (d, det) in dets.iter().enumerate() {
            if det_taken[d] || det.score < s.high_score || self.tracks.len() >= s.max_tracks {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let confirmed = s.min_frames <= 1;
            self.tracks.push(Track {
                id,
                label: det.label.clone(),
                class_id: det.class_id,
                bbox: det.bbox,
                score: det.score,
                best_score: det.score,
                first_seen: at,
                last_seen: at,
                frames: 1,
                confirmed,
                in_last_frame: true,
                velocity: [0.0, 0.0],
            });
            if confirmed {
                changes.push(Change::Confirmed(id));
            }
        }
        changes
    }

    /// Removes and returns the tracks that have left by `now`: those the
    /// latest inferred frame did not see and that were last seen
    /// `end_after` ago, and every track when no frame at all has been
    /// inferred since `silent_after` (the stream is gone). A track the
    /// latest frame saw is still there while frames are skipped for lack of
    /// motion: nothing has changed since.
    pub fn expire(
        &mut self,
        now: SystemTime,
        end_after: Duration,
        last_frame: SystemTime,
        silent_after: Duration,
    ) -> Vec<Track> {
        let gone_silent = now.duration_since(last_frame).unwrap_or_default() >= silent_after;
        let (gone, kept): (Vec<Track>, Vec<Track>) =
            std::mem::take(&mut self.tracks).into_iter().partition(|t| {
                let unseen = now.duration_since(t.last_seen).unwrap_or_default();
                unseen >= end_after && (gone_silent || !t.in_last_frame)
            });
        self.tracks = kept;
        gone
    }

    /// Removes every track (the source stopped or changed).
    pub fn clear(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

fn centre(b: &[f32; 4]) -> [f32; 2] {
    super::zones::centre(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            label: "text".into(),
            class_id: 0,
            score,
            bbox,
            quad: None,
            read: None,
        }
    }

    fn settings(min_frames: u32) -> TrackerSettings {
        TrackerSettings {
            match_iou: 0.3,
            high_score: 0.6,
            min_frames,
            max_tracks: 8,
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    #[test]
    fn an_object_keeps_its_id_while_it_moves_and_ends_once_gone() {
        let mut t = Tracker::new(settings(2), 100);
        assert!(t
            .update(&[det([0.0, 0.0, 40.0, 20.0], 0.9)], at(0))
            .is_empty());
        assert_eq!(
            t.update(&[det([5.0, 0.0, 45.0, 20.0], 0.9)], at(200)),
            [Change::Confirmed(100)]
        );
        for i in 2..20u64 {
            let x = 5.0 * i as f32;
            assert_eq!(
                t.update(&[det([x, 0.0, x + 40.0, 20.0], 0.9)], at(200 * i)),
                [Change::Seen(100)]
            );
        }
        // Gone from the frame: not ended before end_after.
        t.update(&[], at(4000));
        assert!(t
            .expire(
                at(4500),
                Duration::from_secs(1),
                at(4000),
                Duration::from_secs(60)
            )
            .is_empty());
        let ended = t.expire(
            at(5000),
            Duration::from_secs(1),
            at(4000),
            Duration::from_secs(60),
        );
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].id, ended[0].frames), (100, 20));
        assert!(t.tracks().is_empty());
    }

    #[test]
    fn a_weak_detection_keeps_a_track_but_starts_none() {
        let mut t = Tracker::new(settings(1), 1);
        t.update(&[det([0.0, 0.0, 40.0, 20.0], 0.9)], at(0));
        assert_eq!(
            t.update(
                &[
                    det([1.0, 0.0, 41.0, 20.0], 0.4),
                    det([200.0, 0.0, 240.0, 20.0], 0.4)
                ],
                at(200)
            ),
            [Change::Seen(1)]
        );
        assert_eq!(t.tracks().len(), 1);
    }

    #[test]
    fn two_objects_crossing_keep_their_ids() {
        // A moves right, B left, on overlapping rows; they pass through
        // each other, overlapping by more than half at the crossing.
        let mut t = Tracker::new(settings(1), 1);
        let (mut a_id, mut b_id) = (0, 0);
        for i in 0..=20u64 {
            let ax = 10.0 * i as f32;
            let bx = 200.0 - 10.0 * i as f32;
            t.update(
                &[
                    det([ax, 0.0, ax + 40.0, 20.0], 0.9),
                    det([bx, 8.0, bx + 40.0, 28.0], 0.9),
                ],
                at(100 * i),
            );
            let id_at = |x: f32| {
                t.tracks()
                    .iter()
                    .find(|tr| (tr.bbox[0] - x).abs() < 0.01 && tr.in_last_frame)
                    .map(|tr| tr.id)
                    .unwrap()
            };
            let (a, b) = (id_at(ax), id_at(bx));
            if i == 0 {
                (a_id, b_id) = (a, b);
            }
            // At the crossing both boxes coincide in x: told apart by y.
            if i != 10 {
                assert_eq!((a, b), (a_id, b_id), "frame {i}");
            }
        }
        let a = t.get(a_id).unwrap();
        assert_eq!(a.bbox[1], 0.0, "A stayed on its row");
        assert_eq!(t.tracks().len(), 2);
    }

    #[test]
    fn a_present_object_outlives_skipped_frames_but_not_a_silent_stream() {
        let mut t = Tracker::new(settings(1), 1);
        t.update(&[det([0.0, 0.0, 40.0, 20.0], 0.9)], at(0));
        // No frame inferred for 30 s (no motion): still there.
        assert!(t
            .expire(
                at(30_000),
                Duration::from_secs(5),
                at(0),
                Duration::from_secs(40)
            )
            .is_empty());
        assert_eq!(
            t.expire(
                at(41_000),
                Duration::from_secs(5),
                at(0),
                Duration::from_secs(40)
            )
            .len(),
            1
        );
    }
}

//! Property tests: whatever a model outputs, the decoders return (boxes or a
//! one-line error) and never panic. A real book page once panicked the DB
//! decoder's reading-order sort (a comparator that was not a total order),
//! and took every other image of the batch with it.

use edgewatch::postprocess::db::{self, ProbMap};
use edgewatch::postprocess::ClassifyHead;
use edgewatch::postprocess::Placement;
use edgewatch::postprocess::YoloHead;
use edgewatch::postprocess::{DecodeConfig, Detection};
use proptest::prelude::*;

/// Values a model can give: ordinary probabilities, edges, and garbage.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => 0.0f32..1.0,
        2 => Just(0.0f32),
        2 => Just(1.0f32),
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => -1e6f32..1e6,
    ]
}

/// Box sets shaped like dense pages: many boxes, equal and overlapping
/// coordinates, tops a few pixels apart, and the odd NaN.
fn boxes() -> impl Strategy<Value = Vec<[f32; 4]>> {
    let coord = prop_oneof![
        6 => (0u32..400).prop_map(|v| v as f32),
        3 => (0u32..40).prop_map(|v| v as f32 * 3.0),
        1 => Just(f32::NAN),
    ];
    proptest::collection::vec((coord.clone(), coord, 1.0f32..200.0, 1.0f32..30.0), 0..300).prop_map(
        |v| {
            v.into_iter()
                .map(|(x, y, w, h)| [x, y, x + w, y + h])
                .collect()
        },
    )
}

fn det(b: [f32; 4]) -> Detection {
    Detection {
        label: "text".into(),
        class_id: 0,
        score: 0.9,
        bbox: b,
        quad: None,
        read: None,
    }
}

/// Is `a` before `b` in reading order as the rule states it: lines are
/// formed by top, a line holds tops less than 10 px below its first top.
fn top_of(d: &Detection) -> f32 {
    d.bbox[1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reading_order_is_a_total_order(bs in boxes()) {
        let mut dets: Vec<Detection> = bs.iter().copied().map(det).collect();
        db::sort_reading_order(&mut dets);
        prop_assert_eq!(dets.len(), bs.len());
        // Sorting again changes nothing: the order is a fixed point.
        let again = {
            let mut d = dets.clone();
            db::sort_reading_order(&mut d);
            d
        };
        // Bit patterns: NaN coordinates compare unequal to themselves.
        let bits = |d: &[Detection]| -> Vec<[u32; 4]> { d.iter().map(|d| d.bbox.map(f32::to_bits)).collect() };
        prop_assert_eq!(bits(&again), bits(&dets));
        // Tops never go up by 10 px or more from one box to the next
        // (a later line never starts above an earlier one).
        for w in dets.windows(2) {
            let (a, b) = (top_of(&w[0]), top_of(&w[1]));
            if a.is_finite() && b.is_finite() {
                prop_assert!(b > a - 10.0, "top {} after top {}", b, a);
            }
        }
    }

    #[test]
    fn db_decode_never_panics(
        (w, h, data) in (1usize..48, 1usize..48).prop_flat_map(|(w, h)| {
            (Just(w), Just(h), proptest::collection::vec(value(), w * h))
        }),
        dest in (1u32..4000, 1u32..4000),
        dilate in any::<bool>(),
    ) {
        let cfg = DecodeConfig { use_dilation: dilate, ..DecodeConfig::default() };
        let out = db::decode(&cfg, ProbMap::f32(&data, w, h), dest.0, dest.1, "text");
        for d in &out {
            prop_assert!(d.bbox[0] <= d.bbox[2] && d.bbox[1] <= d.bbox[3]);
            prop_assert!(d.bbox[2] <= dest.0 as f32 && d.bbox[3] <= dest.1 as f32);
        }
        let bytes: Vec<u8> = data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0) as u8).collect();
        db::decode(&cfg, ProbMap::u8(&bytes, w, h), dest.0, dest.1, "text");
    }

    #[test]
    fn db_decode_of_dense_lines_never_panics(rows in 20usize..90, gap in 1usize..6, jitter in proptest::collection::vec(0usize..4, 90)) {
        // A page: many thin lines close together, each broken into words.
        let (w, h) = (300usize, rows * (6 + gap) + 8);
        let mut m = vec![0.0f32; w * h];
        for r in 0..rows {
            let y0 = 4 + r * (6 + gap) + jitter[r] % 2;
            for word in 0..6 {
                let x0 = 5 + word * 48 + jitter[(r + word) % 90] * 3;
                for y in y0..(y0 + 5).min(h) {
                    for x in x0..(x0 + 36).min(w) {
                        m[y * w + x] = 0.9;
                    }
                }
            }
        }
        let out = db::decode(&DecodeConfig::default(), ProbMap::f32(&m, w, h), 1500, 2268, "text");
        prop_assert!(!out.is_empty());
    }

    #[test]
    fn yolo_decode_never_panics(
        classes in 1usize..6,
        n in 1usize..40,
        v8 in any::<bool>(),
        seed in proptest::collection::vec(value(), 400),
        frame in (1.0f64..4000.0, 1.0f64..4000.0),
    ) {
        let shape = if v8 { [1, 4 + classes, n] } else { [1, n, 5 + classes] };
        let Ok(head) = YoloHead::from_shape(&shape, Some(classes)) else {
            return Ok(());
        };
        let len = shape[1] * shape[2];
        let data: Vec<f32> = (0..len).map(|i| seed[i % seed.len()] * if i % 7 < 4 { 640.0 } else { 1.0 }).collect();
        let labels: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
        let allowed = vec![true; classes];
        let place = Placement::letterbox([0.0, 0.0, frame.0, frame.1], 640, 640);
        let cfg = DecodeConfig::default();
        let out = head.decode(&data, &cfg, 0.25, &labels, &allowed, &place);
        prop_assert!(out.is_ok());
        // Too short an output is an error, not a panic.
        prop_assert!(head.decode(&data[..len / 2], &cfg, 0.25, &labels, &allowed, &place).is_err());
    }

    #[test]
    fn classify_decode_never_panics(
        data in proptest::collection::vec(value(), 1..50),
        top_k in 0usize..8,
        threshold in prop_oneof![Just(0.0f32), 0.0f32..1.0, Just(f32::NAN)],
    ) {
        let head = ClassifyHead::from_shape(&[1, data.len()], None).unwrap();
        let labels: Vec<String> = (0..data.len()).map(|c| format!("c{c}")).collect();
        let allowed = vec![true; data.len()];
        let out = head.decode(&data, top_k, threshold, &labels, &allowed, (640, 480)).unwrap();
        prop_assert!(out.len() <= top_k);
        let wider = ClassifyHead { classes: data.len() + 1 };
        prop_assert!(wider.decode(&data, top_k, threshold, &labels, &allowed, (640, 480)).is_err());
    }
}

/// Found on a real page: tops 0, 6, 12 px form a chain that the old
/// comparator ordered inconsistently. Lines are formed from the first top.
#[test]
fn reading_order_forms_lines_from_the_first_top() {
    let mut dets = vec![
        det([50.0, 12.0, 60.0, 20.0]),
        det([10.0, 6.0, 20.0, 14.0]),
        det([30.0, 0.0, 40.0, 8.0]),
        det([0.0, 30.0, 5.0, 38.0]),
    ];
    db::sort_reading_order(&mut dets);
    let xs: Vec<f32> = dets.iter().map(|d| d.bbox[0]).collect();
    // 0 and 6 are one line (sorted by x: 10, 30); 12 starts the next line.
    assert_eq!(xs, vec![10.0, 30.0, 50.0, 0.0]);
}

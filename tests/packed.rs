//! `train_step_packed` gives bit for bit what `train_step` gives on the same rows, for one
//! tile (Iris-sized) and several tiles with a partial last block.

use fusedprop::{Error, Mlp, PackedBatch, Sgd, Workspace, rng::SplitMix64};

fn data<const I: usize>(n: usize, classes: u32, seed: u64) -> (Vec<[f32; I]>, Vec<u32>) {
    let mut rng = SplitMix64::new(seed);
    let x = (0..n)
        .map(|_| core::array::from_fn(|_| rng.uniform(2.0)))
        .collect();
    let y = (0..n)
        .map(|_| (rng.next_u64() % u64::from(classes)) as u32)
        .collect();
    (x, y)
}

/// `steps` packed steps and `steps` row steps from the same model: the same losses and
/// weights, bit for bit.
fn packed_equals_rows<const I: usize, const H: usize, const O: usize, const B: usize>(
    n: usize,
    seed: u64,
    lr: f32,
    steps: usize,
) -> Result<(), Error> {
    let (x, y) = data::<I>(n, O as u32, seed);
    let batch = PackedBatch::<I, B>::from_rows(&x, &y)?;
    let mut a = Mlp::<I, H, O>::new(seed + 4);
    let mut b = a.clone();
    let mut ws = Box::new(Workspace::new());
    let sgd = Sgd::new(lr)?;
    for _ in 0..steps {
        let la = a.train_step_packed(&batch, &sgd, &mut ws)?;
        let lb = b.train_step(&x, &y, &sgd, &mut ws)?;
        assert_eq!(la.to_bits(), lb.to_bits());
    }
    assert_eq!(a, b);
    Ok(())
}

#[test]
fn packed_equals_rows_one_tile() -> Result<(), Error> {
    packed_equals_rows::<4, 32, 3, 8>(120, 1, 0.05, 50)
}

#[test]
fn packed_equals_rows_many_tiles() -> Result<(), Error> {
    packed_equals_rows::<9, 17, 5, 21>(333, 2, 0.1, 10)
}

/// 16 inputs or more: the weight gradients come from rows (the packed tile transposed back).
#[test]
fn packed_equals_rows_wide_inputs() -> Result<(), Error> {
    packed_equals_rows::<37, 21, 4, 19>(300, 3, 0.1, 5)
}

#[test]
fn packed_refuses_bad_labels_and_capacity() -> Result<(), Error> {
    let (x, mut y) = data::<4>(20, 3, 3);
    y[17] = 3;
    let batch = PackedBatch::<4, 2>::from_rows(&x, &y)?;
    let mut m = Mlp::<4, 8, 3>::new(1);
    let before = m.clone();
    let err = m.train_step_packed(&batch, &Sgd::new(0.1)?, &mut Workspace::new());
    assert!(matches!(
        err,
        Err(Error::LabelOutOfRange {
            index: 17,
            label: 3,
            ..
        })
    ));
    assert_eq!(m, before);
    assert!(PackedBatch::<4, 1>::from_rows(&x, &y).is_err());
    Ok(())
}

#[test]
fn tiled_training_forward_matches_per_block_loss() -> Result<(), Error> {
    // `loss` runs one block at a time; the training pass runs 4 x 4 register tiles over
    // blocks. The loss before the update must agree bit for bit (one tile, 7 blocks: a tile
    // of 4 blocks and 3 single blocks, shapes off the lane width).
    let (x, y) = data::<33>(100, 17, 4);
    let mut m = Mlp::<33, 19, 17>::new(9);
    let want = m.loss(&x, &y)?;
    let got = m.train_step(&x, &y, &Sgd::new(0.1)?, &mut Workspace::new())?;
    assert_eq!(got.to_bits(), want.to_bits());
    Ok(())
}

#[test]
fn packed_len_capacity_and_debug() -> Result<(), Error> {
    let mut b = PackedBatch::<3, 2>::ZERO;
    assert_eq!(PackedBatch::<3, 2>::CAPACITY, 32);
    assert!(b.is_empty());
    assert_eq!(b.len(), 0);
    // Exactly at the capacity is accepted; one more is refused and leaves the batch empty.
    let (x, y) = data::<3>(33, 3, 5);
    b.fill(&x[..32], &y[..32])?;
    assert_eq!(b.len(), 32);
    assert!(!b.is_empty());
    assert!(matches!(
        b.fill(&x, &y),
        Err(Error::LengthMismatch {
            expected: 32,
            found: 33,
            ..
        })
    ));
    assert!(b.is_empty());
    b.fill(&x[..5], &y[..5])?;
    assert_eq!((b.len(), b.is_empty()), (5, false));
    assert_eq!(format!("{b:?}"), "PackedBatch<3, 2> { len: 5 }");
    Ok(())
}

/// Issue 9, item 6: a packed batch stores its labels as floats, which round from 2^24 on;
/// `LabelOutOfRange` reported 16_777_216 for a label of 16_777_217. It reports the label the
/// caller passed, as `train_step` on the rows does.
#[test]
fn out_of_range_label_is_reported_as_passed() {
    let x = [[0.5f32, -0.5]; 20];
    let sgd = Sgd::new(0.1).unwrap();
    for bad in [16_777_217u32, 16_777_219, 33_554_435, u32::MAX, 3] {
        let mut y = [1u32; 20];
        y[17] = bad;
        y[19] = 16_777_221;
        let batch = PackedBatch::<2, 2>::from_rows(&x, &y).unwrap();
        let mut m = Mlp::<2, 4, 3>::new(1);
        let want = Error::LabelOutOfRange {
            index: 17,
            label: bad,
            classes: 3,
        };
        assert_eq!(
            m.train_step_packed(&batch, &sgd, &mut Workspace::new()),
            Err(want)
        );
        assert_eq!(m.train_step(&x, &y, &sgd, &mut Workspace::new()), Err(want));
    }
}

/// `fill_indices` (a shuffled mini-batch gathered straight into lanes) trains bit for bit as
/// `train_step` on the gathered rows, across tiles and with wide inputs; its errors name the
/// sample in `x` and leave the batch empty.
#[test]
fn fill_indices_equals_gathered_rows() -> Result<(), Error> {
    fn check<const I: usize, const B: usize>(n: usize, take: usize) -> Result<(), Error> {
        let (x, y) = data::<I>(n, 3, 5);
        let mut idx: Vec<usize> = (0..n).collect();
        fusedprop::rng::shuffle(&mut idx, &mut SplitMix64::new(9));
        let idx = &idx[..take];
        let mut batch = PackedBatch::<I, B>::ZERO;
        batch.fill_indices(&x, &y, idx)?;
        assert_eq!(batch.len(), take);
        let bx: Vec<[f32; I]> = idx.iter().map(|&i| x[i]).collect();
        let by: Vec<u32> = idx.iter().map(|&i| y[i]).collect();
        let mut a = Mlp::<I, 8, 3>::new(2);
        let mut b = a.clone();
        let (mut wa, mut wb) = (Workspace::new(), Workspace::new());
        let sgd = Sgd::new(0.05)?;
        for _ in 0..3 {
            let la = a.train_step_packed(&batch, &sgd, &mut wa)?;
            let lb = b.train_step(&bx, &by, &sgd, &mut wb)?;
            assert_eq!(la.to_bits(), lb.to_bits());
        }
        assert_eq!(a, b);
        Ok(())
    }
    check::<4, 2>(100, 32)?;
    check::<4, 2>(100, 7)?;
    check::<4, 20>(400, 300)?;
    check::<20, 10>(200, 150)?;

    let (mut x, y) = data::<4>(50, 3, 1);
    x[31][2] = f32::INFINITY;
    let mut batch = PackedBatch::<4, 2>::ZERO;
    assert_eq!(
        batch.fill_indices(&x, &y, &[3, 31, 4]),
        Err(Error::NonFinite {
            what: "input",
            index: Some(31)
        })
    );
    assert!(batch.is_empty());
    assert!(matches!(
        batch.fill_indices(&x, &y, &[3, 50]),
        Err(Error::InvalidArgument {
            what: "sample index",
            ..
        })
    ));
    assert_eq!(batch.fill_indices(&x, &y, &[]), Err(Error::EmptyBatch));
    assert!(matches!(
        batch.fill_indices(&x, &y, &[0; 33]),
        Err(Error::LengthMismatch { .. })
    ));
    Ok(())
}

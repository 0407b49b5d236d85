//! Reading a checkpoint: the file checksum before HDF5 opens the file, then every attribute
//! and array checked for its type and shape (sizes against the file's length, before anything
//! is allocated), and the checksums over what was read.

use crate::error::{first_line, CheckpointError};
use crate::format::{
    block_lens, check_chain, from_row_major, version_checksum, Checkpoint, History, NetShape,
    OptimizerState, RngState, FORMAT_VERSION,
};
use crate::fsio;
use crate::seal::check_seal;
use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use odenet::{ConvShape, Pool, Readout, Transition};
use std::path::Path;

/// Reads and validates a checkpoint: `path` must be a regular file (a FIFO or a device is
/// refused before anything opens it); every attribute and dataset must have the type and shape
/// the writer gives it, sizes are checked against the file's length before anything is
/// allocated, and the checksums must match.
pub fn read(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let r = Reader::open(path)?;
    r.check_version()?;
    let chain = r.chain()?;
    let (shape, blocks, groups) = r.shapes(chain)?;
    let (lens, len) = r.param_counts(&shape, &blocks, chain)?;
    let params = r.params(&shape, &blocks, &groups, &lens, len)?;
    drop(groups);
    let optimizer = r.optimizer(len)?;
    let rng = r.rng()?;
    let history = r.history()?;
    let f = &r.f;
    let ckpt = Checkpoint {
        config: r.str_attr(f, "config")?,
        iteration: r.u64_attr(f, "iteration")?,
        level: r.u64_attr(f, "level")?,
        shape,
        blocks,
        params,
        optimizer,
        rng,
        history,
    };
    r.check_checksums(&ckpt)?;
    Ok(ckpt)
}

/// The groups `block1/`, `block2/`, … of a chain's later blocks, with their names.
type BlockGroups = Vec<(String, hdf5::Group)>;

/// A checkpoint file open for [`read`]: the file, its path (which every error names) and the
/// bound its length sets on every size.
struct Reader<'a> {
    path: &'a Path,
    /// Every value of a checkpoint is stored uncompressed: no array can hold more values
    /// than the file has bytes for.
    file_values: u64,
    f: hdf5::File,
}

/// The dimensions of an array as a dataset shape [`Reader::dataset`] requires.
fn want(dims: &[usize]) -> Vec<Option<usize>> {
    dims.iter().map(|&x| Some(x)).collect::<Vec<_>>()
}

/// A problem in block `i` of a chain: the message names the block.
fn in_block(i: usize) -> impl Fn(CheckpointError) -> CheckpointError {
    move |e: CheckpointError| match e {
        CheckpointError::Corrupt { path, message } => CheckpointError::Corrupt {
            path,
            message: format!("block {i}: {message}"),
        },
        e => e,
    }
}

impl<'a> Reader<'a> {
    /// Opens `path`: it must be a regular file (a FIFO or a device is refused before
    /// anything opens it), its file checksum ([`check_seal`]) must match before HDF5 parses
    /// it, and HDF5 must open it.
    fn open(path: &'a Path) -> Result<Self, CheckpointError> {
        let unreadable = |message: String| CheckpointError::Unreadable {
            path: path.to_path_buf(),
            message,
        };
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        match fsio::require_regular_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CheckpointError::Missing(path.to_path_buf()))
            }
            Err(e) => return Err(unreadable(e.to_string())),
        }
        // Every value of a checkpoint is stored uncompressed: no array can hold more values
        // than the file has bytes for.
        let file_values = std::fs::metadata(path)
            .map_err(|e| unreadable(e.to_string()))?
            .len()
            / 8;
        check_seal(path).map_err(corrupt)?;
        let f = hdf5::File::open(path).map_err(|e| unreadable(first_line(e)))?;
        Ok(Reader {
            path,
            file_values,
            f,
        })
    }

    /// The file is damaged: `message` says how.
    fn corrupt(&self, message: String) -> CheckpointError {
        CheckpointError::Corrupt {
            path: self.path.to_path_buf(),
            message,
        }
    }

    /// The attribute `name` of `loc`, which must exist and be a scalar of type `want`.
    fn attr(
        &self,
        loc: &hdf5::Location,
        name: &str,
        want: &TypeDescriptor,
    ) -> Result<hdf5::Attribute, CheckpointError> {
        let a = loc
            .attr(name)
            .map_err(|_| self.corrupt(format!("attribute `{name}` is missing")))?;
        let t = a.dtype().and_then(|t| t.to_descriptor());
        if !a.is_scalar() || t.as_ref().ok() != Some(want) {
            return Err(self.corrupt(format!("attribute `{name}` is not a scalar {want}")));
        }
        Ok(a)
    }

    /// A scalar u64 attribute ([`Reader::attr`]), read.
    fn u64_attr(&self, loc: &hdf5::Location, name: &str) -> Result<u64, CheckpointError> {
        let u64_type = TypeDescriptor::Unsigned(IntSize::U8);
        self.attr(loc, name, &u64_type)?
            .read_scalar::<u64>()
            .map_err(|_| self.corrupt(format!("attribute `{name}` is unreadable")))
    }

    /// A scalar string attribute ([`Reader::attr`]), read.
    fn str_attr(&self, loc: &hdf5::Location, name: &str) -> Result<String, CheckpointError> {
        self.attr(loc, name, &TypeDescriptor::VarLenUnicode)?
            .read_scalar::<VarLenUnicode>()
            .map(|s| s.as_str().to_string())
            .map_err(|_| self.corrupt(format!("attribute `{name}` is unreadable")))
    }

    /// Checks `format_version`: this code reads [`FORMAT_VERSION`].
    fn check_version(&self) -> Result<(), CheckpointError> {
        let version = self.u64_attr(&self.f, "format_version")?;
        if version != FORMAT_VERSION {
            return Err(CheckpointError::Version {
                path: self.path.to_path_buf(),
                found: version,
            });
        }
        Ok(())
    }

    /// A size: at least 1 (or 0 where `zero` allows it), and no more than the file's values.
    fn size(&self, loc: &hdf5::Location, name: &str, zero: bool) -> Result<usize, CheckpointError> {
        let file_values = self.file_values;
        let v = self.u64_attr(loc, name)?;
        if (v == 0 && !zero) || v > file_values {
            return Err(self.corrupt(format!(
                "attribute `{name}` = {v} is impossible for a file of {} bytes",
                file_values * 8
            )));
        }
        Ok(v as usize)
    }

    /// A size of at least 1 ([`Reader::size`]).
    fn dim(&self, loc: &hdf5::Location, name: &str) -> Result<usize, CheckpointError> {
        self.size(loc, name, false)
    }

    /// A 0/1 attribute; `default` when the file predates it.
    fn flag(
        &self,
        loc: &hdf5::Location,
        name: &str,
        default: Option<bool>,
    ) -> Result<bool, CheckpointError> {
        if default.is_some() && loc.attr(name).is_err() {
            return Ok(default.unwrap_or(false));
        }
        match self.u64_attr(loc, name)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.corrupt(format!("attribute `{name}` = {v} is not 0 or 1"))),
        }
    }

    /// The shape of a block: its attributes in `loc`. `chain`: a block of a chain (an inner
    /// block has 0 classes); `later`: a later block, whose attributes have no defaults.
    fn read_shape(
        &self,
        loc: &hdf5::Location,
        chain: bool,
        later: bool,
    ) -> Result<NetShape, CheckpointError> {
        let default = |v: bool| if later { None } else { Some(v) };
        // A convolutional network's image structure: present with any of its attributes
        // (then all are required), a transition with any of its.
        let any = |names: &[&str]| names.iter().any(|n| loc.attr(n).is_ok());
        let conv = if any(&[
            "conv_in_channels",
            "conv_channels",
            "conv_height",
            "conv_width",
            "conv_kernel_h",
            "conv_kernel_w",
            "conv_global_average",
        ]) {
            let transition = if any(&[
                "transition_pool",
                "transition_in_height",
                "transition_in_width",
            ]) {
                let pool = match self.str_attr(loc, "transition_pool")?.as_str() {
                    "none" => None,
                    "average" => Some(Pool::Average),
                    "max" => Some(Pool::Max),
                    other => {
                        return Err(self.corrupt(format!(
                            "attribute `transition_pool` = {other:?} is not \"none\", \"average\" or \"max\""
                        )))
                    }
                };
                Some(Transition {
                    pool,
                    in_height: self.dim(loc, "transition_in_height")?,
                    in_width: self.dim(loc, "transition_in_width")?,
                })
            } else {
                None
            };
            Some(ConvShape {
                in_channels: self.dim(loc, "conv_in_channels")?,
                channels: self.dim(loc, "conv_channels")?,
                height: self.dim(loc, "conv_height")?,
                width: self.dim(loc, "conv_width")?,
                kernel_h: self.dim(loc, "conv_kernel_h")?,
                kernel_w: self.dim(loc, "conv_kernel_w")?,
                readout: if self.flag(loc, "conv_global_average", None)? {
                    Readout::GlobalAverage
                } else {
                    Readout::Flatten
                },
                transition,
            })
        } else {
            None
        };
        Ok(NetShape {
            input: self.dim(loc, "input_dim")?,
            width: self.dim(loc, "width")?,
            classes: self.size(loc, "classes", chain)?,
            layers: self.dim(loc, "layers")?,
            opening_params: self.flag(loc, "opening_params", None)?,
            hidden_sets: self.dim(loc, "hidden_sets")?,
            classifier_params: self.flag(loc, "classifier_params", default(true))?,
            time_scale: self.flag(loc, "time_scale", default(false))?,
            conv,
        })
    }

    /// A chain of ODE blocks: `chain_blocks` blocks (block 0 in the root, the others in
    /// `block1/`, `block2/`, …) and `chain_params` parameters; `None` without
    /// `chain_blocks` (a network of one block). Checks that a chain has at least 2 blocks
    /// and that both sizes fit the file.
    fn chain(&self) -> Result<Option<(usize, usize)>, CheckpointError> {
        let f = &self.f;
        let chain = if f.attr("chain_blocks").is_ok() {
            let blocks = self.dim(f, "chain_blocks")?;
            if blocks < 2 {
                return Err(self.corrupt(format!(
                    "attribute `chain_blocks` = {blocks}: a chain has at least 2 blocks"
                )));
            }
            Some((blocks, self.size(f, "chain_params", false)?))
        } else {
            None
        };
        Ok(chain)
    }

    /// The blocks' shapes ([`Reader::read_shape`]): block 0's from the root, a chain's later
    /// blocks' from their groups, which must exist (returned too, for their parameters). A
    /// problem in a block of a chain names the block.
    fn shapes(
        &self,
        chain: Option<(usize, usize)>,
    ) -> Result<(NetShape, Vec<NetShape>, BlockGroups), CheckpointError> {
        let f = &self.f;
        let shape = self.read_shape(f, chain.is_some(), false).map_err(|e| {
            if chain.is_some() {
                in_block(0)(e)
            } else {
                e
            }
        })?;
        let mut groups = Vec::new();
        let mut blocks = Vec::new();
        for i in 1..chain.map_or(0, |(n, _)| n) {
            let name = format!("block{i}");
            let g = f
                .group(&name)
                .map_err(|_| self.corrupt(format!("group `{name}` is missing")))
                .map_err(in_block(i))?;
            blocks.push(self.read_shape(&g, true, true).map_err(in_block(i))?);
            groups.push((name, g));
        }
        Ok((shape, blocks, groups))
    }

    /// The parameter counts of the blocks (block 0's first) and their total, in checked
    /// arithmetic, since the attributes are not trusted yet: each block's sizes must fit
    /// together and its parameters, and all of them, must fit the file; the blocks of a chain
    /// must fit together ([`check_chain`]) and `chain_params` must be their total.
    fn param_counts(
        &self,
        shape: &NetShape,
        blocks: &[NetShape],
        chain: Option<(usize, usize)>,
    ) -> Result<(Vec<usize>, usize), CheckpointError> {
        let file_values = self.file_values;
        // The parameter counts, in checked arithmetic: the attributes are not trusted yet.
        let inconsistent = |shape: &NetShape| {
            format!(
                "network shape {shape:?} is inconsistent or has more parameters than a file of {} bytes can hold",
                file_values * 8
            )
        };
        let len0 = shape
            .checked_len()
            .filter(|&len| len as u64 <= file_values)
            .ok_or_else(|| self.corrupt(inconsistent(shape)))
            .map_err(|e| if chain.is_some() { in_block(0)(e) } else { e })?;
        let mut lens = vec![len0];
        for (i, b) in blocks.iter().enumerate() {
            let l = b
                .checked_len()
                .filter(|&len| len as u64 <= file_values)
                .ok_or_else(|| self.corrupt(inconsistent(b)))
                .map_err(in_block(i + 1))?;
            lens.push(l);
        }
        let len = lens
            .iter()
            .try_fold(0usize, |a, &l| a.checked_add(l))
            .filter(|&len| len as u64 <= file_values)
            .ok_or_else(|| {
                self.corrupt(format!(
                    "the blocks' parameters {lens:?} cannot fit the file"
                ))
            })?;
        if let Some((_, stored)) = chain {
            let shapes: Vec<NetShape> = std::iter::once(*shape)
                .chain(blocks.iter().copied())
                .collect();
            check_chain(&shapes).map_err(|m| self.corrupt(m))?;
            if stored != len {
                return Err(self.corrupt(format!(
                    "attribute `chain_params` = {stored}, but the {} need {len}",
                    block_lens(&lens)
                )));
            }
        }
        Ok((lens, len))
    }

    /// A dataset `group/name` of element type `want_type` and shape `want` (`None`: any
    /// length, bounded by the file's), read in full.
    fn dataset(
        &self,
        g: &hdf5::Group,
        gname: &str,
        name: &str,
        want_type: &TypeDescriptor,
        want: &[Option<usize>],
    ) -> Result<(hdf5::Dataset, Vec<usize>), CheckpointError> {
        let file_values = self.file_values;
        let ds = g
            .dataset(name)
            .map_err(|_| self.corrupt(format!("dataset `{gname}/{name}` is missing")))?;
        let t = ds.dtype().and_then(|t| t.to_descriptor());
        if t.as_ref().ok() != Some(want_type) {
            return Err(self.corrupt(format!(
                "dataset `{gname}/{name}` does not hold {want_type} values"
            )));
        }
        let sh = ds.shape();
        let fits = sh.len() == want.len()
            && sh.iter().zip(want).all(|(&a, b)| b.is_none_or(|b| a == b))
            && sh
                .iter()
                .try_fold(1usize, |acc, &x| acc.checked_mul(x))
                .is_some_and(|total| total as u64 <= file_values * 8);
        if !fits {
            let want: Vec<String> = want
                .iter()
                .map(|x| x.map_or("any".to_string(), |x| x.to_string()))
                .collect();
            return Err(self.corrupt(format!(
                "dataset `{gname}/{name}` has shape {sh:?}, expected [{}]",
                want.join(", ")
            )));
        }
        Ok((ds, sh))
    }

    /// A dataset of f64 values ([`Reader::dataset`]), read, with its shape.
    fn get(
        &self,
        g: &hdf5::Group,
        gname: &str,
        name: &str,
        want: &[Option<usize>],
    ) -> Result<(Vec<f64>, Vec<usize>), CheckpointError> {
        let f64_type = TypeDescriptor::Float(FloatSize::U8);
        let (ds, sh) = self.dataset(g, gname, name, &f64_type, want)?;
        let v = ds
            .read_raw::<f64>()
            .map_err(|e| self.corrupt(format!("dataset `{gname}/{name}`: {}", first_line(e))))?;
        Ok((v, sh))
    }

    /// The group `name` of the file's root, which must exist.
    fn group(&self, name: &str) -> Result<hdf5::Group, CheckpointError> {
        self.f
            .group(name)
            .map_err(|_| self.corrupt(format!("group `{name}` is missing")))
    }

    /// One block's parameter arrays in `g` into its θ, `th`.
    fn block_params(
        &self,
        g: &hdf5::Group,
        gp: &str,
        shape: &NetShape,
        th: &mut [f64],
    ) -> Result<(), CheckpointError> {
        let layout = shape.layout();
        let (w, d, n) = (shape.width, shape.input, shape.hidden_sets);
        let ([open_shape, hidden_shape, bias_shape, class_shape], feat) = shape.array_shapes();
        let (ow, _) = self.get(g, gp, "opening_weight", &want(&open_shape))?;
        if shape.conv.is_none() {
            from_row_major(open_shape[0], d, &ow, &mut th[layout.open_weight.clone()]);
        } else {
            th[layout.open_weight.clone()].copy_from_slice(&ow);
        }
        let (ob, _) = self.get(g, gp, "opening_bias", &[Some(layout.open_bias.len())])?;
        th[layout.open_bias.clone()].copy_from_slice(&ob);
        let (hw, _) = self.get(g, gp, "hidden_weight", &want(&hidden_shape))?;
        let (hb, _) = self.get(g, gp, "hidden_bias", &want(&bias_shape))?;
        let (kl, bl) = (layout.shape.layer_weight_len(), bias_shape[1]);
        for i in 0..n {
            let kn = &hw[i * kl..(i + 1) * kl];
            if shape.conv.is_none() {
                from_row_major(w, w, kn, &mut th[layout.layer_weight(i)]);
            } else {
                th[layout.layer_weight(i)].copy_from_slice(kn);
            }
            th[layout.layer_bias(i)].copy_from_slice(&hb[i * bl..(i + 1) * bl]);
        }
        let class_rows = class_shape[0];
        let (cw, _) = self.get(g, gp, "classifier_weight", &want(&class_shape))?;
        from_row_major(class_rows, feat, &cw, &mut th[layout.class_weight.clone()]);
        let (cb, _) = self.get(g, gp, "classifier_bias", &[Some(class_rows)])?;
        th[layout.class_bias.clone()].copy_from_slice(&cb);
        if shape.time_scale {
            let (ts, _) = self.get(g, gp, "time_scale", &[Some(1)])?;
            th[layout.scale.clone()].copy_from_slice(&ts);
        }
        Ok(())
    }

    /// θ, `len` values: each block's parameter arrays ([`Reader::block_params`]; block 0's in
    /// `parameters/`, a later block's in its group of `groups`), `lens` the blocks' counts. A
    /// problem in a later block names the block.
    fn params(
        &self,
        shape: &NetShape,
        blocks: &[NetShape],
        groups: &BlockGroups,
        lens: &[usize],
        len: usize,
    ) -> Result<Vec<f64>, CheckpointError> {
        let len0 = lens[0];
        let mut params = vec![0.0; len];
        let (th0, mut rest) = params.split_at_mut(len0);
        self.block_params(&self.group("parameters")?, "parameters", shape, th0)?;
        for (i, ((name, g), b)) in groups.iter().zip(blocks).enumerate() {
            let (th, tail) = rest.split_at_mut(lens[i + 1]);
            self.block_params(g, name, b, th).map_err(in_block(i + 1))?;
            rest = tail;
        }
        Ok(params)
    }

    /// The optimizer state: `optimizer/`'s L-BFGS pairs (as many `lbfgs_y` as `lbfgs_s`, each
    /// of `len` values), the root's `optimizer` kind, the moment and velocity vectors (each
    /// empty or of `len` values) and `adam_t`.
    fn optimizer(&self, len: usize) -> Result<OptimizerState, CheckpointError> {
        let f = &self.f;
        let o = self.group("optimizer")?;
        let go = "optimizer";
        let (s_flat, s_shape) = self.get(&o, go, "lbfgs_s", &[None, Some(len)])?;
        let (y_flat, _) = self.get(&o, go, "lbfgs_y", &[Some(s_shape[0]), Some(len)])?;
        let split = |v: Vec<f64>| -> Vec<Vec<f64>> { v.chunks(len).map(|c| c.to_vec()).collect() };
        // A moment or velocity vector: empty (not used by this optimizer) or one per parameter.
        let vec_of = |name: &str| -> Result<Vec<f64>, CheckpointError> {
            let (v, sh) = self.get(&o, go, name, &[None])?;
            if sh[0] != 0 && sh[0] != len {
                return Err(self.corrupt(format!(
                    "dataset `{go}/{name}` has shape {sh:?}, expected [{len}] or [0]"
                )));
            }
            Ok(v)
        };
        let optimizer = OptimizerState {
            kind: self.str_attr(f, "optimizer")?,
            lbfgs_s: split(s_flat),
            lbfgs_y: split(y_flat),
            adam_m: vec_of("adam_m")?,
            adam_v: vec_of("adam_v")?,
            adam_t: self.u64_attr(&o, "adam_t")?,
            sgd_velocity: vec_of("sgd_velocity")?,
        };
        Ok(optimizer)
    }

    /// The mini-batch generator's state in `rng/`: a 32-byte `seed`, one `stream`, the
    /// `word_pos` as two words, and the `batch_order`.
    fn rng(&self) -> Result<RngState, CheckpointError> {
        let r = self.group("rng")?;
        let gr = "rng";
        let u64_type = TypeDescriptor::Unsigned(IntSize::U8);
        let u8_type = TypeDescriptor::Unsigned(IntSize::U1);
        let read_u64 = |name: &str, want: Option<usize>| -> Result<Vec<u64>, CheckpointError> {
            let (ds, _) = self.dataset(&r, gr, name, &u64_type, &[want])?;
            ds.read_raw::<u64>()
                .map_err(|e| self.corrupt(format!("dataset `{gr}/{name}`: {}", first_line(e))))
        };
        let (seed_ds, _) = self.dataset(&r, gr, "seed", &u8_type, &[Some(32)])?;
        let seed: [u8; 32] = seed_ds
            .read_raw::<u8>()
            .map_err(|e| self.corrupt(format!("dataset `{gr}/seed`: {}", first_line(e))))?
            .try_into()
            .map_err(|_| self.corrupt(format!("dataset `{gr}/seed` must hold 32 bytes")))?;
        let stream = read_u64("stream", Some(1))?[0];
        let wp = read_u64("word_pos", Some(2))?;
        let rng = RngState {
            seed,
            stream,
            word_pos: ((wp[0] as u128) << 64) | wp[1] as u128,
            batch_order: read_u64("batch_order", None)?,
        };
        Ok(rng)
    }

    /// The training history in `history/`: the `columns` attribute, and `values` with one
    /// column for each.
    fn history(&self) -> Result<History, CheckpointError> {
        let h = self.group("history")?;
        let columns: Vec<String> = self
            .str_attr(&h, "columns")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let (vals, _) = self.get(&h, "history", "values", &[None, Some(columns.len())])?;
        let history = History {
            rows: vals
                .chunks(columns.len().max(1))
                .map(|c| c.to_vec())
                .collect(),
            columns,
        };
        Ok(history)
    }

    /// Checks the stored `checksum` against the contents read, then (where the file has one)
    /// `version_checksum` against `layerpar_version` and the contents.
    fn check_checksums(&self, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
        let f = &self.f;
        let stored = self.u64_attr(f, "checksum")?;
        if stored != ckpt.checksum() {
            return Err(self.corrupt("the checksum does not match the contents".into()));
        }
        // Files since layerpar 0.1 (this change) also cover `layerpar_version`; older files
        // have no `version_checksum` and are read as before.
        let layerpar_version = self.str_attr(f, "layerpar_version")?;
        if f.attr("version_checksum").is_ok() {
            let stored = self.u64_attr(f, "version_checksum")?;
            if stored != version_checksum(&layerpar_version, ckpt.checksum()) {
                return Err(
                    self.corrupt("the checksum of `layerpar_version` does not match".into())
                );
            }
        }
        Ok(())
    }
}

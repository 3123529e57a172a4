//! The fixed benchmark instances in `../shared/benchdata/` (raw little-endian f64 arrays,
//! row-major, described by a `manifest.json` each) that peers in other languages were
//! measured on.

use fold_runtime::nalgebra::{DMatrix, DVector};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One instance: its arrays and scalars.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `p1_boxqp`, `p2_ncvxqp` or `p3_simplex`.
    pub problem: String,
    /// The state dimension.
    pub n: usize,
    /// Where it was read from.
    pub dir: PathBuf,
    arrays: HashMap<String, (Vec<usize>, Vec<f64>)>,
    /// Named scalars (`alpha`, `unroll_K_to_1e-10`, …).
    pub scalars: HashMap<String, f64>,
}

impl Instance {
    /// A vector array.
    pub fn vector(&self, name: &str) -> Result<DVector<f64>, String> {
        let (shape, data) = self.array(name)?;
        if shape.len() != 1 {
            return Err(format!("{name}: expected a vector, shape {shape:?}"));
        }
        Ok(DVector::from_column_slice(data))
    }

    /// A matrix array (stored row-major).
    pub fn matrix(&self, name: &str) -> Result<DMatrix<f64>, String> {
        let (shape, data) = self.array(name)?;
        if shape.len() != 2 {
            return Err(format!("{name}: expected a matrix, shape {shape:?}"));
        }
        Ok(DMatrix::from_row_slice(shape[0], shape[1], data))
    }

    /// A scalar of the manifest.
    pub fn scalar(&self, name: &str) -> Result<f64, String> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| format!("{}: no scalar `{name}`", self.dir.display()))
    }

    fn array(&self, name: &str) -> Result<(&[usize], &[f64]), String> {
        self.arrays
            .get(name)
            .map(|(s, d)| (s.as_slice(), d.as_slice()))
            .ok_or_else(|| format!("{}: no array `{name}`", self.dir.display()))
    }
}

/// `../shared/benchdata` relative to the workspace root, or `$FOLD_BENCHDATA`.
pub fn default_root() -> PathBuf {
    match std::env::var_os("FOLD_BENCHDATA") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/benchdata"),
    }
}

/// Reads one instance directory.
pub fn load(dir: &Path) -> Result<Instance, String> {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let m: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", dir.display()))?;
    let problem = m["problem"]
        .as_str()
        .ok_or("manifest: no problem")?
        .to_string();
    let n = m["n"].as_u64().ok_or("manifest: no n")? as usize;
    let mut arrays = HashMap::new();
    for a in m["arrays"].as_array().ok_or("manifest: no arrays")? {
        let name = a["name"].as_str().ok_or("array without name")?;
        let file = a["file"].as_str().ok_or("array without file")?;
        if a["byte_order"].as_str() != Some("little") || a["dtype"].as_str() != Some("f64") {
            return Err(format!("{name}: only little-endian f64 is supported"));
        }
        let shape: Vec<usize> = a["shape"]
            .as_array()
            .ok_or("array without shape")?
            .iter()
            .map(|v| v.as_u64().unwrap_or(0) as usize)
            .collect();
        let bytes = std::fs::read(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
        let count: usize = shape.iter().product();
        if bytes.len() != 8 * count {
            return Err(format!("{file}: {} bytes for shape {shape:?}", bytes.len()));
        }
        let data = bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect();
        arrays.insert(name.to_string(), (shape, data));
    }
    let mut scalars = HashMap::new();
    if let Some(obj) = m["scalars"].as_object() {
        for (k, v) in obj {
            if let Some(x) = v.as_f64() {
                scalars.insert(k.clone(), x);
            }
        }
    }
    Ok(Instance {
        problem,
        n,
        dir: dir.to_path_buf(),
        arrays,
        scalars,
    })
}

/// Every instance under `root`, sorted by problem and size.
pub fn load_all(root: &Path) -> Result<Vec<Instance>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for e in entries.flatten() {
        if e.path().join("manifest.json").exists() {
            out.push(load(&e.path())?);
        }
    }
    out.sort_by(|a, b| (a.problem.as_str(), a.n).cmp(&(b.problem.as_str(), b.n)));
    Ok(out)
}

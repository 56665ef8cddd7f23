//! Mutation test (issue 18): real input files — .npy arrays, safetensors checkpoints (header and
//! data), config.json, tokenizer files, GLUE TSV, a run's summary and curve — mutated a few
//! thousand times with a fixed seed and handed to the library's readers in process. None may
//! panic, and none may return success with garbage: a model that loads must give finite logits
//! (or a clear error), an array that reads must hold exactly the bytes its header promises, a
//! dataset that reads must have the task's labels.
use crate::common::*;
use bertology::data::batch::{make_batches, Padding};
use bertology::data::glue::{Split, Task};
use bertology::eval::predict;
use bertology::model::tokenizer::TextTokenizer;
use bertology::model::{LoadOptions, Model};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

thread_local! {
    /// Set while a mutation is checked: its panics are counted, not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// xorshift64*: a fixed seed gives the same mutations on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit of `bytes`, within `range` (a header, say) when given.
fn mutate(rng: &mut Rng, bytes: &[u8], range: Option<std::ops::Range<usize>>) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let r = range.unwrap_or(0..b.len().max(1));
    let at = r.start + rng.below(r.len().max(1));
    let at = at.min(b.len());
    match rng.below(9) {
        // Flip one bit.
        0 if at < b.len() => b[at] ^= 1 << rng.below(8),
        // Overwrite a byte with anything.
        1 if at < b.len() => b[at] = rng.next() as u8,
        // Overwrite a byte with a digit or JSON/TSV punctuation: reaches numbers and structure.
        2 if at < b.len() => {
            let set = b"0123456789-.,:\t\n\"{}[]e";
            b[at] = set[rng.below(set.len())];
        }
        // Delete a run of bytes.
        3 => {
            let n = (1 + rng.below(16)).min(b.len() - at);
            b.drain(at..at + n);
        }
        // Duplicate a run of bytes.
        4 => {
            let n = (1 + rng.below(16)).min(b.len() - at);
            let run: Vec<u8> = b[at..at + n].to_vec();
            b.splice(at..at, run);
        }
        // Insert digits (a number grows by orders of magnitude).
        5 => {
            let digits: Vec<u8> = (0..1 + rng.below(9))
                .map(|_| b'0' + rng.below(10) as u8)
                .collect();
            b.splice(at..at, digits);
        }
        // Truncate.
        6 => b.truncate(at),
        // Append garbage.
        7 => b.extend((0..1 + rng.below(32)).map(|_| rng.next() as u8)),
        // Several edits at once.
        _ => {
            for _ in 0..2 + rng.below(4) {
                b = mutate(rng, &b, None);
            }
        }
    }
    b
}

/// Runs `f` on each mutation of `base`; counts cases, and collects panics and garbage.
struct Tally {
    runs: usize,
    failures: Vec<String>,
    /// (group, mutations, seconds), for the summary line.
    groups: Vec<(String, usize, f64)>,
    mark: (usize, std::time::Instant),
}

impl Tally {
    /// Closes a group of mutations for the summary.
    fn group(&mut self, name: &str) {
        let (runs, at) = self.mark;
        self.groups
            .push((name.into(), self.runs - runs, at.elapsed().as_secs_f64()));
        self.mark = (self.runs, std::time::Instant::now());
    }

    fn check(&mut self, what: &str, i: usize, f: impl FnOnce() -> Result<(), String>) {
        self.runs += 1;
        QUIET.with(|q| q.set(true));
        let result = catch_unwind(AssertUnwindSafe(f));
        QUIET.with(|q| q.set(false));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(garbage)) => self
                .failures
                .push(format!("{what} #{i}: success with garbage: {garbage}")),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first: String = msg.chars().take(160).collect();
                self.failures.push(format!("{what} #{i}: panic: {first}"));
            }
        }
    }
}

fn load(dir: &Path) -> anyhow::Result<Model> {
    Model::load(
        dir,
        &LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(Task::Mrpc.into()),
        },
    )
}

/// A model that loads must give finite logits of the right shape, or a clear error.
fn model_property(
    dir: &Path,
    batches: &[bertology::data::batch::Batch],
    n: i64,
) -> Result<(), String> {
    let Ok(model) = load(dir) else {
        return Ok(());
    };
    match predict(model.net.as_ref(), batches, None, None) {
        Ok(logits) => {
            if logits.size() != [n, 2] {
                return Err(format!("logits of shape {:?}", logits.size()));
            }
            if !bertology::finite::all_finite(&logits) {
                return Err("non-finite logits".into());
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

fn replace_file(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn mutated_inputs_never_panic_nor_load_as_garbage() {
    let start = std::time::Instant::now();
    // Panics inside a check are caught and counted; the default hook would print each one.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET.with(|q| q.get()) {
            default_hook(info);
        }
    }));
    // libtorch's thread count is not set here: it is the whole process's, and the other tests
    // of this binary run beside this one.
    let mut rng = Rng(0x5eed_1234_abcd_0018);
    let mut tally = Tally {
        runs: 0,
        failures: Vec::new(),
        groups: Vec::new(),
        mark: (0, std::time::Instant::now()),
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let work: PathBuf = tmp.path().join("work");
    let reset = |work: &Path| {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).unwrap();
        for e in std::fs::read_dir(&t).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), work.join(e.file_name())).unwrap();
        }
    };
    reset(&work);
    let tok = TextTokenizer::from_dir(&t, 32).unwrap();
    let examples = Task::Mrpc.read(&mrpc_dir(), Split::Dev, Some(6)).unwrap();
    let encoded = bertology::data::batch::encode_examples(&tok, &examples).unwrap();
    let labels: Vec<_> = examples.iter().map(|e| e.label).collect();
    let batches = make_batches(
        &encoded,
        &labels,
        3,
        Padding::Longest,
        tok.pad_id(),
        Device::Cpu,
    );
    // The unmutated model passes the property (else the test proves nothing).
    assert!(load(&work).is_ok());
    model_property(&work, &batches, 6).unwrap();

    // 1. Weights: the safetensors header (names, dtypes, shapes, offsets) and the data.
    let weights = std::fs::read(t.join("model.safetensors")).unwrap();
    let header_end = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    for i in 0..600 {
        let range = if i % 3 == 2 {
            None
        } else {
            Some(0..header_end)
        };
        let m = mutate(&mut rng, &weights, range);
        replace_file(&work, "model.safetensors", &m);
        tally.check("model.safetensors", i, || {
            model_property(&work, &batches, 6)
        });
    }
    replace_file(&work, "model.safetensors", &weights);
    tally.group("model.safetensors");

    // 2. config.json.
    let config = std::fs::read(t.join("config.json")).unwrap();
    for i in 0..500 {
        let m = mutate(&mut rng, &config, None);
        replace_file(&work, "config.json", &m);
        tally.check("config.json", i, || model_property(&work, &batches, 6));
    }
    replace_file(&work, "config.json", &config);
    tally.group("config.json");

    // 3. Tokenizer files: vocab.txt and tokenizer_config.json; a tokenizer that loads must
    //    encode, and the model must run its ids or say why not.
    for name in ["vocab.txt", "tokenizer_config.json"] {
        let base = std::fs::read(t.join(name)).unwrap();
        for i in 0..200 {
            let m = mutate(&mut rng, &base, None);
            replace_file(&work, name, &m);
            tally.check(name, i, || {
                let Ok(tok) = TextTokenizer::from_dir(&work, 32) else {
                    return Ok(());
                };
                let Ok(enc) = bertology::data::batch::encode_examples(&tok, &examples) else {
                    return Ok(());
                };
                let b = make_batches(
                    &enc,
                    &labels,
                    3,
                    Padding::Longest,
                    tok.pad_id(),
                    Device::Cpu,
                );
                model_property(&work, &b, 6)
            });
        }
        replace_file(&work, name, &base);
    }
    tally.group("vocab.txt, tokenizer_config.json");
    // tokenizer.json, from the installed MiniLM (scripts/setup.sh) when present.
    let minilm_tok = root().join("models/all-MiniLM-L6-v2/tokenizer.json");
    if minilm_tok.is_file() {
        let base = std::fs::read(&minilm_tok).unwrap();
        let tdir = tmp.path().join("tok");
        std::fs::create_dir_all(&tdir).unwrap();
        for i in 0..60 {
            // Mutations near the start reach the settings rather than the vocabulary.
            let range = if i % 2 == 0 { Some(0..4000) } else { None };
            let m = mutate(&mut rng, &base, range);
            replace_file(&tdir, "tokenizer.json", &m);
            tally.check("tokenizer.json", i, || {
                if let Ok(tok) = TextTokenizer::from_dir(&tdir, 32) {
                    let _ = bertology::data::batch::encode_examples(&tok, &examples);
                }
                Ok(())
            });
        }
    }

    tally.group("tokenizer.json");
    // 4. .npy arrays: an array that reads holds exactly what its header says.
    let arrays = [
        bertology::npy::to_bytes(&Tensor::rand([3, 4], (Kind::Float, Device::Cpu))).unwrap(),
        bertology::npy::to_bytes(&Tensor::arange(12, (Kind::Int64, Device::Cpu)).view([3, 4]))
            .unwrap(),
    ];
    for i in 0..1500 {
        let base = &arrays[i % 2];
        let range = if i % 2 == 0 { Some(0..80) } else { None };
        let m = mutate(&mut rng, base, range);
        tally.check(".npy", i, || {
            let Ok(t) = bertology::npy::from_bytes(&m) else {
                return Ok(());
            };
            let (h, start) = bertology::npy::parse_header(&m).map_err(|e| e.to_string())?;
            let bytes = t.numel() * h.item_size;
            if bytes != m.len() - start || t.size() != h.shape {
                return Err(format!(
                    "{:?} from {} data bytes",
                    t.size(),
                    m.len() - start
                ));
            }
            Ok(())
        });
    }

    tally.group(".npy");
    // 5. GLUE TSV (MRPC's dev file, as bytes: UTF-8 is checked too), read as several tasks.
    let dev = std::fs::read_to_string(mrpc_dir().join("dev.tsv")).unwrap();
    let head: String = dev.lines().take(12).map(|l| format!("{l}\n")).collect();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..800 {
        let m = mutate(&mut rng, head.as_bytes(), None);
        std::fs::write(data.join("dev.tsv"), &m).unwrap();
        let task = [Task::Mrpc, Task::Mrpc, Task::Rte, Task::Stsb, Task::Cola][i % 5];
        tally.check("dev.tsv", i, || {
            let Ok(ex) = task.read(&data, Split::Dev, None) else {
                return Ok(());
            };
            let n_lines = m.split(|&b| b == b'\n').count();
            if ex.is_empty() || ex.len() > n_lines {
                return Err(format!("{} examples from {n_lines} lines", ex.len()));
            }
            let labels = task.labels().len() as i64;
            for e in &ex {
                match e.label {
                    Some(bertology::data::glue::Label::Class(c)) if (0..labels).contains(&c) => {}
                    Some(bertology::data::glue::Label::Score(s))
                        if task.is_regression() && s.is_finite() => {}
                    other => return Err(format!("label {other:?}")),
                }
            }
            Ok(())
        });
    }

    tally.group("dev.tsv");
    // 6. A run's files as report reads them: prune.json, masking_curve.csv, and the whole
    //    report of a real importance run with one file mutated.
    let run = tmp.path().join("run");
    let o = bertology(&[
        "importance",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        mrpc_dir().to_str().unwrap(),
        "--data-subset",
        "8",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--output-dir",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = br#"{"task":"mrpc","split":"dev","metric":"acc","original_score":0.8,"threshold":0.9,"target_heads":null,"heads_total":12,"heads_kept":6,"fraction_kept":0.5,"timing":[{"batch_size":32,"examples_per_second_before":10.5,"examples_per_second_after":12.0,"speedup":1.14}],"settings":{"order":"importance"}}"#;
    let curve = b"step,heads_kept,fraction_kept,score,importance_reestimated,accepted\n0,12,1,0.8,true,true\n1,11,0.9167,0.79,true,true\n2,10,0.8333,0.6,true,false\n";
    let sfile = tmp.path().join("prune.json");
    let cfile = tmp.path().join("masking_curve.csv");
    for i in 0..500 {
        if i % 2 == 0 {
            std::fs::write(&sfile, mutate(&mut rng, summary, None)).unwrap();
            tally.check("prune.json", i, || {
                let _ = bertology::report::read_summary(&sfile);
                Ok(())
            });
        } else {
            std::fs::write(&cfile, mutate(&mut rng, curve, None)).unwrap();
            tally.check("masking_curve.csv", i, || {
                if let Ok(points) = bertology::report::read_curve(&cfile) {
                    if points
                        .iter()
                        .any(|p| !p.score.is_finite() || !(0.0..=1.0).contains(&p.fraction_kept))
                    {
                        return Err("a curve point out of range".into());
                    }
                }
                Ok(())
            });
        }
    }
    let files = [
        "head_importance.npy",
        "head_ranks.npy",
        "attn_entropy.npy",
        "importance.json",
    ];
    let out = tmp.path().join("report-out");
    for i in 0..120 {
        let name = files[i % files.len()];
        let base = std::fs::read(run.join(name)).unwrap();
        std::fs::write(run.join(name), mutate(&mut rng, &base, None)).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        tally.check("report", i, || {
            let _ = bertology::report::build(&run, &out, &run);
            Ok(())
        });
        std::fs::write(run.join(name), &base).unwrap();
    }

    tally.group("report files");
    let seconds = start.elapsed().as_secs_f64();
    for (g, n, s) in &tally.groups {
        eprintln!("  {g}: {n} mutations, {s:.1} s");
    }
    eprintln!(
        "mutation test: {} mutated inputs in {seconds:.1} s",
        tally.runs
    );
    assert!(tally.runs >= 4000, "only {} mutations", tally.runs);
    assert!(
        tally.failures.is_empty(),
        "{} of {} mutations failed:\n{}",
        tally.failures.len(),
        tally.runs,
        tally.failures.join("\n")
    );
}

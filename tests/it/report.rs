//! Pictures and report.md rebuilt from a run's files, through `bertology report`.
use crate::common::bertology;
use std::path::Path;
use tch::{Kind, Tensor};

/// Files of a finished 6 x 12 importance run and prune run, written as the commands write them.
fn fixture_runs(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let imp = root.join("importance-run");
    let prune = root.join("prune-run");
    for d in [&imp, &prune] {
        std::fs::create_dir_all(d).unwrap();
        tch::manual_seed(3);
        let importance = Tensor::rand([6, 12], (Kind::Float, tch::Device::Cpu));
        importance.write_npy(d.join("head_importance.npy")).unwrap();
        bertology::importance::ranks(&importance)
            .write_npy(d.join("head_ranks.npy"))
            .unwrap();
    }
    (Tensor::rand([6, 12], (Kind::Float, tch::Device::Cpu)) * 4.0)
        .write_npy(imp.join("attn_entropy.npy"))
        .unwrap();
    std::fs::write(
        imp.join("importance.json"),
        r#"{"task":"mrpc","split":"dev","model":"m","data_dir":"d","examples":408,"tokens":21723,"metric":"acc","score":0.8,"command":"bertology importance --task mrpc"}"#,
    )
    .unwrap();
    let mask = Tensor::ones([6, 12], (Kind::Float, tch::Device::Cpu));
    for (l, h) in [(0, 1), (2, 5), (5, 11), (5, 0)] {
        let _ = mask.get(l).get(h).fill_(0.0);
    }
    mask.write_npy(prune.join("head_mask.npy")).unwrap();
    std::fs::write(
        prune.join("masking_curve.csv"),
        "step,heads_kept,fraction_kept,score,importance_reestimated,accepted\n0,72,1,0.81,true,true\n1,65,0.9027,0.80,true,true\n2,58,0.8055,0.78,true,true\n3,51,0.7083,0.70,true,false\n",
    )
    .unwrap();
    std::fs::write(
        prune.join("prune.json"),
        r#"{"task":"mrpc","split":"dev","model":"m","data_dir":"d","examples":408,"metric":"acc","original_score":0.8137,"masked_score":0.7843,
            "pruned_score":0.7843,"threshold":0.9,"target_heads":null,"heads_total":72,"heads_kept":58,"fraction_kept":0.8055,
            "heads_kept_per_layer":[11,12,11,12,12,10],"parameters_before":22713986,"parameters_after":22443586,
            "timing":[{"batch_size":32,"examples_per_second_before":150.5,"examples_per_second_after":170.25,"speedup":1.131}],
            "settings":{"order":"importance","seed":42},"seconds":41.5,"command":"bertology prune --task mrpc"}"#,
    )
    .unwrap();
    (imp, prune)
}

/// The text contents of an SVG's <text> elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')
                .and_then(|(_, rest)| rest.split_once("</text>"))
        })
        .map(|(body, _)| body.trim().to_string())
        .collect()
}

fn check_png(path: &Path, size: (u32, u32)) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels() {
        colours.insert(p.0);
    }
    assert!(
        colours.len() > 20,
        "{} looks blank ({} colours)",
        path.display(),
        colours.len()
    );
    // Text was drawn: dark pixels exist (axis labels), not only the colour map.
    assert!(
        img.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count() > 200,
        "{}: no text",
        path.display()
    );
}

#[test]
fn pictures_and_report_from_run_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (imp, prune) = fixture_runs(tmp.path());
    for dir in [&imp, &prune] {
        let out = bertology(&["report", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let heatmap_size = (110 + 56 * 12 + 150, 110 + 56 * 6);
    check_png(&imp.join("importance.png"), heatmap_size);
    check_png(&imp.join("entropy.png"), heatmap_size);
    check_png(&prune.join("importance.png"), heatmap_size);
    check_png(&prune.join("pruning_curve.png"), (900, 560));
    for svg in [
        imp.join("importance.svg"),
        imp.join("entropy.svg"),
        prune.join("importance.svg"),
    ] {
        let texts = svg_texts(&std::fs::read_to_string(&svg).unwrap());
        assert!(
            texts.iter().any(|t| t == "layer") && texts.iter().any(|t| t.starts_with("head")),
            "{}",
            svg.display()
        );
        for label in ["0", "5", "11"] {
            assert!(
                texts.iter().any(|t| t == label),
                "{}: no label {label}",
                svg.display()
            );
        }
    }
    let curve = svg_texts(&std::fs::read_to_string(prune.join("pruning_curve.svg")).unwrap());
    assert!(
        curve.iter().any(|t| t == "fraction of heads pruned")
            && curve.iter().any(|t| t == "kept 58 heads"),
        "{curve:?}"
    );

    let report = std::fs::read_to_string(prune.join("report.md")).unwrap();
    for number in [
        "0.8137", "0.7843", "22713986", "22443586", "150.5", "170.25", "41.5", "58", "0.9",
    ] {
        assert!(report.contains(number), "report.md lacks {number}");
    }
    assert!(report.contains("bertology prune --task mrpc"));
    for link in ["importance.png", "pruning_curve.png"] {
        assert!(report.contains(&format!("]({link})")) && prune.join(link).is_file());
    }
    let report = std::fs::read_to_string(imp.join("report.md")).unwrap();
    assert!(report.contains("](entropy.png)") && report.contains("21723"));

    // --json names the files where they are after the run (not in its staging folder).
    let out = bertology(&["report", "--json", imp.to_str().unwrap()]);
    let listed = crate::common::ok(&out);
    assert_eq!(
        listed["report"].as_str(),
        Some(imp.join("report.md").to_str().unwrap())
    );
    let pictures = listed["pictures"].as_array().unwrap();
    assert_eq!(pictures.len(), 4, "{listed}");
    for p in pictures {
        let p = Path::new(p.as_str().unwrap());
        assert!(p.is_file() && p.parent() == Some(imp.as_path()), "{listed}");
    }
}

#[test]
fn compare_runs_and_bad_run_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, prune) = fixture_runs(tmp.path());
    let other = tmp.path().join("reverse-run");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["masking_curve.csv", "prune.json"] {
        std::fs::copy(prune.join(f), other.join(f)).unwrap();
    }
    let out_dir = tmp.path().join("cmp");
    let out = bertology(&[
        "report",
        "--compare",
        prune.to_str().unwrap(),
        other.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_png(&out_dir.join("pruning_curve.png"), (900, 560));
    let svg = std::fs::read_to_string(out_dir.join("pruning_curve.svg")).unwrap();
    assert!(svg.contains("prune-run") && svg.contains("reverse-run"));

    let out = bertology(&["report", tmp.path().to_str().unwrap()]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && e.contains("no prune.json or importance.json")
            && e.lines().count() == 1,
        "{e}"
    );
    std::fs::write(other.join("masking_curve.csv"), "step,heads_kept,fraction_kept,score,importance_reestimated,accepted\n0,x,1,0.8,true,true\n").unwrap();
    let out = bertology(&["report", other.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && e.contains("masking_curve.csv: line 2: heads_kept is not a number"),
        "{e}"
    );
}

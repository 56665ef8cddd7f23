//! The attention viewer in a real browser: headless Chromium (Debian's `chromium`, installed by
//! scripts/setup.sh when CI asks for it) opens the page from a file with every host name
//! unresolvable, so the page must work with no network. A screenshot must show tokens and
//! lines, and opening another layer/head (the URL hash the selectors write) must change the
//! drawn lines to that head's weights. Skipped, with a message, when Chromium is absent.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("which").arg(name).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Runs headless Chromium on `url` with the network cut off (every host unresolvable).
fn browse(browser: &Path, profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The embedded data of the page.
fn page_data(html: &str) -> serde_json::Value {
    let data = html
        .split("<script type=\"application/json\" id=\"data\">")
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .unwrap();
    serde_json::from_str(data).unwrap()
}

/// The value of attribute `name` in a tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()
}

/// (data-layer, data-head, [(query, key, opacity)]) of the single-head drawing in a DOM dump.
fn drawn(dom: &str) -> (String, String, Vec<(usize, usize, f64)>) {
    let svg = dom
        .split("<svg id=\"attn\"")
        .nth(1)
        .expect("no #attn drawing in the DOM");
    let head = svg.split('>').next().unwrap();
    let lines = svg
        .split("<line ")
        .skip(1)
        .map(|l| {
            let tag = l.split('>').next().unwrap();
            (
                attr(tag, "data-q").unwrap().parse().unwrap(),
                attr(tag, "data-k").unwrap().parse().unwrap(),
                attr(tag, "stroke-opacity").unwrap().parse().unwrap(),
            )
        })
        .collect();
    (
        attr(head, "data-layer").unwrap().to_string(),
        attr(head, "data-head").unwrap().to_string(),
        lines,
    )
}

#[test]
fn viewer_draws_tokens_and_lines_and_follows_the_selected_head() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED viewer_browser: no chromium on PATH (scripts/setup.sh installs it in CI)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert");
    ok(&bertology(&[
        "attention",
        "--device",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--text",
        "the cat sat.",
        "--text-pair",
        "a dog ran",
        "--output-dir",
        tmp.path().to_str().unwrap(),
        "--json",
    ]));
    let page = tmp.path().join("attention.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let data = page_data(&html);
    let n = data["tokens"].as_array().unwrap().len();
    let url = |hash: &str| format!("file://{}#{hash}", page.display());
    let profile = tmp.path().join("profile");

    // Screenshot of layer 1, head 2: tokens (dark text) and lines (the head's colour).
    let shot = tmp.path().join("shot.png");
    browse(
        &browser,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=700,800",
        ],
        &url("layer=1&head=2"),
    );
    let img = image::open(&shot).unwrap().to_rgb8();
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 90)).count();
    // Head 2's colour is green (#2ca02c); faint lines blend it with white.
    let green = img
        .pixels()
        .filter(|p| p[1] as i32 - p[0] as i32 > 25 && p[1] as i32 - p[2] as i32 > 25)
        .count();
    assert!(
        dark > 1500,
        "only {dark} dark (text) pixels in the screenshot"
    );
    assert!(green > 1500, "only {green} line pixels in the screenshot");
    if let Ok(dir) = std::env::var("BERTOLOGY_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&dir).join("viewer.png")).unwrap();
    }

    // The DOM after opening two different heads: each drawing carries that head's weights.
    let mut seen = Vec::new();
    for (l, h) in [(0usize, 0usize), (2, 3)] {
        let out = browse(
            &browser,
            &profile,
            &["--dump-dom"],
            &url(&format!("layer={l}&head={h}")),
        );
        let dom = String::from_utf8_lossy(&out.stdout).to_string();
        let (dl, dh, lines) = drawn(&dom);
        assert_eq!((dl, dh), (l.to_string(), h.to_string()));
        assert_eq!(dom.matches("class=\"q\"").count(), n, "query tokens drawn");
        assert_eq!(dom.matches("class=\"k\"").count(), n, "key tokens drawn");
        let w: Vec<u64> = data["attn"][l][h]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let expected = w.iter().filter(|&&v| v >= 5).count();
        assert_eq!(lines.len(), expected, "layer {l} head {h}: lines drawn");
        for &(q, k, o) in &lines {
            assert!(
                (o - w[q * n + k] as f64 / 1000.0).abs() < 1e-3,
                "line {q}->{k}"
            );
        }
        seen.push(lines);
    }
    assert_ne!(
        seen[0], seen[1],
        "switching heads did not change the drawing"
    );

    // All heads of a layer: one cell per head, each with its own lines.
    let out = browse(
        &browser,
        &profile,
        &["--dump-dom"],
        &url("layer=1&head=all"),
    );
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(dom.contains("id=\"grid\" data-layer=\"1\""));
    assert_eq!(dom.matches("class=\"cell\"").count(), 4);
    assert_eq!(dom.matches("class=\"thumb\"").count(), 4);
}

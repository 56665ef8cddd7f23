//! A single self-contained HTML page showing one example's attention: tokens on two sides,
//! one line per (query, key) pair whose opacity is the weight, a layer/head selector, all
//! heads of a layer at once, and each head's importance when known. No network: the data, the
//! script and the style are inline, the drawing is SVG made by the script.
//!
//! The page's state lives in the URL hash (`#layer=2&head=5`, `#layer=2&head=all`): the
//! selectors write it and every drawing reads it, so a link (or a test) can open any view.
use anyhow::Result;
use serde_json::json;

/// [layers][heads] normalised importance and rank (0 = most important).
pub type HeadImportance<'a> = (&'a [Vec<f64>], &'a [Vec<f64>]);

/// One example's attention and what is known about the heads.
pub struct ViewerData<'a> {
    pub title: &'a str,
    pub tokens: &'a [String],
    /// [layers][heads] → row-major [n·n] weights (rows are queries), None for pruned heads.
    pub attentions: &'a [Vec<Option<Vec<f32>>>],
    /// Importance and rank of every head, when known.
    pub importance: Option<HeadImportance<'a>>,
    /// A decoder: queries see only themselves and earlier tokens (the page says so).
    pub causal: bool,
}

/// The page as a string.
pub fn render(data: &ViewerData) -> Result<String> {
    // Weights as integers in thousandths keep the page small; opacity needs no more.
    let attn: Vec<Vec<Option<Vec<u16>>>> = data
        .attentions
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|h| {
                    h.as_ref().map(|w| {
                        w.iter()
                            .map(|x| (x.clamp(0.0, 1.0) * 1000.0).round() as u16)
                            .collect()
                    })
                })
                .collect()
        })
        .collect();
    let payload = json!({
        "title": data.title,
        "tokens": data.tokens,
        "layers": attn.len(),
        "heads": attn.first().map_or(0, Vec::len),
        "attn": attn,
        "importance": data.importance.map(|(i, _)| i),
        "ranks": data.importance.map(|(_, r)| r),
        "causal": data.causal,
    });
    // "<" only occurs inside JSON strings, where \u003c is the same character: the script
    // element can then never be closed early by a token such as "</script>".
    let payload = serde_json::to_string(&payload)?.replace('<', "\\u003c");
    // One pass over the template: text that itself contains a marker (a title or token
    // "__DATA__") is never substituted again.
    let title = escape_html(data.title);
    let mut html = String::with_capacity(TEMPLATE.len() + payload.len() + 2 * title.len());
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("__") {
        html.push_str(&rest[..at]);
        let marker = &rest[at..];
        if let Some(after) = marker.strip_prefix("__TITLE__") {
            html.push_str(&title);
            rest = after;
        } else if let Some(after) = marker.strip_prefix("__DATA__") {
            html.push_str(&payload);
            rest = after;
        } else {
            html.push_str("__");
            rest = &marker[2..];
        }
    }
    html.push_str(rest);
    Ok(html)
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; margin: 16px; color: #222; background: #fff; }
  h1 { font-size: 18px; margin: 0 0 8px 0; }
  #controls { margin: 8px 0 12px 0; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  #controls label { font-size: 14px; }
  select { font-size: 14px; padding: 2px 4px; }
  #info { font-size: 14px; color: #444; }
  #view svg text { font-size: 13px; fill: #111; }
  #view svg text.hot { font-weight: bold; fill: #b00; }
  .grid { display: flex; flex-wrap: wrap; gap: 10px; }
  .cell { border: 1px solid #ccc; padding: 4px; cursor: pointer; }
  .cell:hover { border-color: #333; }
  .cell .cap { font-size: 12px; text-align: center; }
  .legend { font-size: 12px; color: #555; margin-top: 6px; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div id="controls">
  <label>layer <select id="layer"></select></label>
  <label>head <select id="head"></select></label>
  <span id="info"></span>
</div>
<div id="view"></div>
<div class="legend">Left: each token as a query; right: the tokens it attends to. A line's opacity is the
attention weight. Hover a token to see only its lines; pick "all heads" to see every head of a layer,
and click one to open it.</div>
<div class="legend" id="causal"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"];
const n = D.tokens.length;
const layerSel = document.getElementById("layer");
const headSel = document.getElementById("head");
if (D.causal) document.getElementById("causal").textContent = "A causal model (decoder): each token " +
  "attends only to itself and to earlier tokens, so no line goes to a later token.";

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function state() {
  const s = { layer: 0, head: 0 };
  for (const part of location.hash.replace(/^#/, "").split("&")) {
    const [k, v] = part.split("=");
    if (k === "layer") s.layer = Math.min(Math.max(parseInt(v, 10) || 0, 0), D.layers - 1);
    if (k === "head") s.head = v === "all" ? "all" : Math.min(Math.max(parseInt(v, 10) || 0, 0), D.heads - 1);
  }
  return s;
}

function go(layer, head) { location.hash = "layer=" + layer + "&head=" + head; }

function importanceText(l, h) {
  if (!D.importance) return "";
  const v = D.importance[l][h];
  if (v === null || v === undefined || Number.isNaN(v)) return "";
  return "importance " + v.toFixed(3) + " (rank " + D.ranks[l][h] + ")";
}

// One head's lines from query i (left, x = x0) to key j (right, x = x1).
function drawHead(svg, w, x0, x1, y0, step, colour, labels) {
  const lines = el("g", { "class": "lines" }, svg);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = w[i * n + j];
      if (v < 5) continue; // below 0.005: invisible anyway
      el("line", { x1: x0, y1: y0 + i * step, x2: x1, y2: y0 + j * step, stroke: colour,
                   "stroke-width": labels ? 2 : 1, "stroke-opacity": (v / 1000).toFixed(3),
                   "data-q": i, "data-k": j }, lines);
    }
  }
  return lines;
}

function single(view, l, h) {
  const w = D.attn[l][h];
  const step = 20, top = 20, width = 620, x0 = 230, x1 = 390;
  const svg = el("svg", { id: "attn", width: width, height: top + n * step + 10,
                          "data-layer": l, "data-head": h }, view);
  if (!w) {
    el("text", { x: 20, y: 30 }, svg).textContent = "this head was pruned";
    svg.setAttribute("data-lines", 0);
    return;
  }
  const lines = drawHead(svg, w, x0, x1, top, step, COLOURS[h % COLOURS.length], true);
  svg.setAttribute("data-lines", lines.childNodes.length);
  D.tokens.forEach((t, i) => {
    const a = el("text", { x: x0 - 8, y: top + i * step + 4, "text-anchor": "end", "class": "q", "data-i": i }, svg);
    a.textContent = t;
    const b = el("text", { x: x1 + 8, y: top + i * step + 4, "text-anchor": "start", "class": "k", "data-i": i }, svg);
    b.textContent = t;
    const focus = (on) => {
      a.classList.toggle("hot", on);
      for (const line of lines.childNodes) {
        line.style.display = !on || line.getAttribute("data-q") == i ? "" : "none";
      }
    };
    a.addEventListener("mouseenter", () => focus(true));
    a.addEventListener("mouseleave", () => focus(false));
  });
}

function grid(view, l) {
  const box = document.createElement("div");
  box.className = "grid";
  box.id = "grid";
  box.setAttribute("data-layer", l);
  view.appendChild(box);
  const step = Math.max(2, Math.min(8, 480 / Math.max(n, 1)));
  for (let h = 0; h < D.heads; h++) {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.setAttribute("data-head", h);
    const svg = el("svg", { width: 110, height: n * step + 10, "class": "thumb" }, cell);
    if (D.attn[l][h]) drawHead(svg, D.attn[l][h], 10, 100, 5, step, COLOURS[h % COLOURS.length], false);
    const cap = document.createElement("div");
    cap.className = "cap";
    const imp = importanceText(l, h);
    cap.textContent = "head " + h + (D.attn[l][h] ? "" : " (pruned)") + (imp ? " · " + imp.replace("importance ", "") : "");
    cell.appendChild(cap);
    cell.addEventListener("click", () => go(l, h));
    box.appendChild(cell);
  }
}

function draw() {
  const s = state();
  layerSel.value = String(s.layer);
  headSel.value = String(s.head);
  const view = document.getElementById("view");
  view.textContent = "";
  if (s.head === "all") {
    grid(view, s.layer);
    document.getElementById("info").textContent = "all " + D.heads + " heads of layer " + s.layer +
      (D.importance ? " (importance, rank under each)" : "");
  } else {
    single(view, s.layer, s.head);
    document.getElementById("info").textContent = importanceText(s.layer, s.head);
  }
}

for (let l = 0; l < D.layers; l++) layerSel.add(new Option(String(l), String(l)));
headSel.add(new Option("all heads", "all"));
for (let h = 0; h < D.heads; h++) headSel.add(new Option(String(h), String(h)));
layerSel.addEventListener("change", () => go(layerSel.value, state().head));
headSel.addEventListener("change", () => go(state().layer, headSel.value));
window.addEventListener("hashchange", draw);
draw();
</script>
</body>
</html>
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained_and_escapes_tokens() {
        let tokens = vec!["[CLS]".to_string(), "</script>".to_string()];
        let attn = vec![vec![Some(vec![1.0f32, 0.0, 0.25, 0.75]), None]];
        let html = render(&ViewerData {
            title: "a <b> test",
            tokens: &tokens,
            attentions: &attn,
            importance: None,
            causal: false,
        })
        .unwrap();
        // No fetch of any kind: no src/href attributes, no CSS imports or urls.
        for needle in [
            " src=",
            " href=",
            "@import",
            "url(",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!html.contains(needle), "{needle}");
        }
        assert_eq!(
            html.matches("</script>").count(),
            2,
            "a token closed a script early"
        );
        assert!(html.contains("a &lt;b&gt; test"));
        assert!(html.contains("[[[1000,0,250,750],null]]"));
    }

    #[test]
    fn markers_inside_the_text_are_not_substituted() {
        let tokens = vec!["__DATA__".to_string(), "__TITLE__".to_string()];
        let attn = vec![vec![Some(vec![1.0f32, 0.0, 0.5, 0.5])]];
        let title = "what __DATA__ and __TITLE__ mean";
        let html = render(&ViewerData {
            title,
            tokens: &tokens,
            attentions: &attn,
            importance: None,
            causal: false,
        })
        .unwrap();
        assert!(html.contains(&format!("<title>{title}</title>")), "title");
        assert!(html.contains(&format!("<h1>{title}</h1>")), "heading");
        assert_eq!(html.matches(title).count(), 3, "title, heading and data");
        let start = html.find(r#"id="data">"#).unwrap() + r#"id="data">"#.len();
        let end = start + html[start..].find("</script>").unwrap();
        let payload: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(payload["title"], title);
        assert_eq!(
            payload["tokens"],
            serde_json::json!(["__DATA__", "__TITLE__"])
        );
    }
}

/* Cold diffusion live in the page: the book's models run in the reader's browser, with no kernel.
 *
 * A Markdown cell holds <div class="colddiff-live" data-mode="degrade|restore|generate"
 * data-models="mnist-blur,...">; this script turns it into a figure. The models are the zoo's,
 * exported by `python -m colddiff_lib export` into _static/live/ (step.onnx: one step of Algorithm 1
 * or 2; degrade.onnx: D(x0, t); model.json: T, shape, generation prior), and run by onnxruntime-web
 * (vendored from npm into _static/ort/ at build time, one thread, WebAssembly).
 *
 * Images are Float32Arrays of C*H*W values in [-1, 1], shown as grey levels round((x + 1) * 127.5).
 * window.colddiffLive exposes every figure's state and its last run (for the browser test).
 */
(function () {
  "use strict";
  const here = document.currentScript ? document.currentScript.src.replace(/[^/]*$/, "") : "_static/";
  const LIVE = here + "live/";
  const api = { components: [], ready: null, errors: [] };
  window.colddiffLive = api;

  // --- onnxruntime-web and the exported files ---------------------------------------------------
  let bookPromise = null;
  const models = {};

  // onnxruntime-web is loaded only by pages that hold a live figure.
  function loadOrt() {
    if (window.ort) return Promise.resolve(window.ort);
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = here + "ort/ort.wasm.min.js";
      s.onload = () => resolve(window.ort);
      s.onerror = () => reject(new Error(s.src + " did not load (run `make book`, which vendors onnxruntime-web)"));
      document.head.appendChild(s);
    });
  }

  function book() {
    if (!bookPromise) {
      bookPromise = loadOrt().then((ort) => {
        ort.env.wasm.wasmPaths = here + "ort/";
        ort.env.wasm.numThreads = 1; // a static site is not cross-origin isolated: no SharedArrayBuffer
        return Promise.all([fetchJSON(LIVE + "book.json"), fetchJSON(LIVE + "digits.json")]);
      }).then(([info, digits]) => ({ info, digits }));
    }
    return bookPromise;
  }

  function fetchJSON(url) {
    return fetch(url).then((r) => {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  }

  function model(name) {
    if (!models[name]) {
      const ort = window.ort;
      const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
      models[name] = Promise.all([
        fetchJSON(LIVE + name + "/model.json"),
        ort.InferenceSession.create(LIVE + name + "/step.onnx", opts),
        ort.InferenceSession.create(LIVE + name + "/degrade.onnx", opts),
      ]).then(([meta, step, degrade]) => ({ meta, step, degrade, size: meta.shape[0] * meta.shape[1] * meta.shape[2] }));
    }
    return models[name];
  }

  function tensorOf(m, images) {
    // images: list of Float32Array (one per image) -> a [B, C, H, W] float32 tensor
    const data = new Float32Array(images.length * m.size);
    images.forEach((img, i) => data.set(img, i * m.size));
    return new window.ort.Tensor("float32", data, [images.length].concat(m.meta.shape));
  }

  function levels(n, value) {
    return new window.ort.Tensor("int64", BigInt64Array.from({ length: n }, () => BigInt(value)), [n]);
  }

  async function degrade(m, x0, t) {
    const out = await m.degrade.run({ x0: tensorOf(m, [x0]), t: levels(1, t) });
    return out.x_t.data.slice();
  }

  // Run Algorithm 2 (improved) or 1 from x_t at level t down to 0; keep every iterate and estimate.
  async function run(m, x, t, improved) {
    const frames = [{ s: t, x: x, x0: null }];
    const flag = new window.ort.Tensor("float32", new Float32Array([improved ? 1 : 0]), [1]);
    const start = performance.now();
    for (let s = t; s >= 1; s--) {
      const out = await m.step.run({ x: tensorOf(m, [x]), s: levels(1, s), improved: flag });
      frames[frames.length - 1].x0 = out.x0_hat.data.slice();
      x = out.x_next.data.slice();
      frames.push({ s: s - 1, x: x, x0: null });
    }
    return { x0: x, frames, ms: performance.now() - start };
  }

  // --- drawing ------------------------------------------------------------------------------------
  function grey(v) {
    return Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
  }

  function canvas(px, label) {
    const fig = el("figure", "colddiff-live-image");
    const c = el("canvas");
    c.width = c.height = 32;
    c.style.width = c.style.height = px + "px";
    fig.appendChild(c);
    const cap = el("figcaption", "", label || "");
    fig.appendChild(cap);
    return { fig, canvas: c, caption: cap };
  }

  function paint(view, img, caption) {
    const n = Math.round(Math.sqrt(img.length));
    const ctx = view.canvas.getContext("2d");
    const pixels = ctx.createImageData(n, n);
    for (let i = 0; i < n * n; i++) {
      const g = grey(img[i]);
      pixels.data.set([g, g, g, 255], 4 * i);
    }
    view.canvas.width = view.canvas.height = n;
    ctx.putImageData(pixels, 0, 0);
    view.values = img;
    if (caption !== undefined) view.caption.innerHTML = caption;
  }

  function el(tag, cls, html) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (html !== undefined) e.innerHTML = html;
    return e;
  }

  function button(text, onclick) {
    const b = el("button", "colddiff-live-button", text);
    b.type = "button";
    b.addEventListener("click", onclick);
    return b;
  }

  function slider(min, max, value, oninput) {
    const s = el("input");
    s.type = "range";
    s.min = min;
    s.max = max;
    s.step = 1;
    s.value = value;
    s.addEventListener("input", () => oninput(parseInt(s.value, 10)));
    return s;
  }

  function select(names, onchange) {
    const s = el("select", "colddiff-live-select");
    names.forEach((n) => s.appendChild(Object.assign(el("option", "", n), { value: n })));
    s.addEventListener("change", () => onchange(s.value));
    return s;
  }

  // A row of held-out digits, and a pad to draw one's own (white on black, like MNIST).
  function digitPicker(digits, onpick) {
    const row = el("div", "colddiff-live-picker");
    const images = digits.pixels.map((p) => Float32Array.from(p, (g) => g / 127.5 - 1));
    const thumbs = images.map((img, i) => {
      const v = canvas(28);
      paint(v, img);
      v.canvas.title = "held-out digit " + digits.labels[i];
      v.canvas.addEventListener("click", () => choose(i));
      row.appendChild(v.fig);
      return v;
    });
    const pad = canvas(84, "draw here");
    pad.fig.classList.add("colddiff-live-pad");
    row.appendChild(pad.fig);
    const drawn = new Float32Array(32 * 32).fill(-1);
    paint(pad, drawn);
    let down = false;
    const ink = (ev) => {
      const r = pad.canvas.getBoundingClientRect();
      const pt = ev.touches ? ev.touches[0] : ev;
      const cx = ((pt.clientX - r.left) / r.width) * 32, cy = ((pt.clientY - r.top) / r.height) * 32;
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
          const d2 = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2; // a soft round brush of radius ~1.5 px
          const v = Math.exp(-d2 / 2.0) * 2;
          drawn[y * 32 + x] = Math.min(1, drawn[y * 32 + x] + v);
        }
      paint(pad, drawn);
      onpick(drawn.slice(), "your digit");
      ev.preventDefault();
    };
    pad.canvas.addEventListener("pointerdown", (e) => { down = true; ink(e); });
    pad.canvas.addEventListener("pointermove", (e) => { if (down) ink(e); });
    window.addEventListener("pointerup", () => { down = false; });
    row.appendChild(button("clear", () => { drawn.fill(-1); paint(pad, drawn); onpick(drawn.slice(), "your digit"); }));
    function choose(i) {
      thumbs.forEach((v, j) => v.canvas.classList.toggle("colddiff-live-chosen", i === j));
      onpick(images[i].slice(), "held-out digit " + digits.labels[i]);
    }
    return { row, images, choose };
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // --- the three figures --------------------------------------------------------------------------
  // Chapter 2: a slider over t for each model's degradation.
  async function degradeFigure(root, names, ctx) {
    const state = { x0: null, t: {}, views: {} };
    const rows = el("div", "colddiff-live-rows");
    const ms = await Promise.all(names.map(model));
    const update = async () => {
      for (const [k, name] of names.entries()) {
        const t = state.t[name];
        paint(state.views[name], await degrade(ms[k], state.x0, t), `D(x<sub>0</sub>, ${t}), t = ${t} of ${ms[k].meta.T}`);
      }
      state.updated = (state.updated || 0) + 1;
    };
    names.forEach((name, k) => {
      const m = ms[k];
      const row = el("div", "colddiff-live-row");
      row.appendChild(el("div", "colddiff-live-label", `<strong>${m.meta.degradation.name}</strong> (${name}, T = ${m.meta.T})`));
      state.t[name] = Math.ceil(m.meta.T / 2);
      const s = slider(0, m.meta.T, state.t[name], (t) => { state.t[name] = t; update(); });
      s.setAttribute("aria-label", "level t of " + m.meta.degradation.name);
      row.appendChild(s);
      state.views[name] = canvas(128);
      row.appendChild(state.views[name].fig);
      rows.appendChild(row);
    });
    const picker = digitPicker(ctx.digits, (x0) => { state.x0 = x0; update(); });
    root.append(picker.row, rows);
    picker.choose(0);
    return state;
  }

  // Chapter 4: Algorithms 1 and 2 side by side from the same x_t, x0 estimates underneath.
  async function restoreFigure(root, names, ctx) {
    const state = { x0: null, name: names[0], t: null, runs: 0 };
    const colours = ctx.info.colours;
    const top = el("div", "colddiff-live-row");
    const start = canvas(128, "x<sub>t</sub>");
    const level = el("span", "colddiff-live-label");
    let m = await model(state.name);
    const firstLevel = (T) => Math.min(T, 5); // the blur erases a digit within a few steps: start where it shows
    state.t = firstLevel(m.meta.T);
    const s = slider(1, m.meta.T, state.t, (t) => { state.t = t; state.shown = show(); });
    s.setAttribute("aria-label", "starting level t");
    const go = button("restore", () => restore());
    if (names.length > 1) top.appendChild(select(names, async (n) => {
      m = await model(n);
      state.name = n;
      s.max = m.meta.T;
      s.value = state.t = firstLevel(m.meta.T);
      state.shown = show();
    }));
    top.append(level, s, go);
    const cols = el("div", "colddiff-live-columns");
    const column = (key, title) => {
      const col = el("div", "colddiff-live-column");
      col.style.borderTopColor = colours[key];
      col.appendChild(el("div", "colddiff-live-label", `<strong style="color:${colours[key]}">${title}</strong>`));
      const x = canvas(128, "x<sub>s</sub>"), hat = canvas(128, "x&#770;<sub>0</sub> = R(x<sub>s</sub>, s)");
      col.append(x.fig, hat.fig);
      cols.appendChild(col);
      return { x, hat };
    };
    const views = { naive: column("naive", "Algorithm 1 (naive)"), improved: column("improved", "Algorithm 2 (improved)") };
    const timing = el("p", "colddiff-live-timing");
    const show = async () => {
      state.xt = await degrade(m, state.x0, state.t);
      paint(start, state.xt, `x<sub>t</sub> = D(x<sub>0</sub>, ${state.t})`);
      level.textContent = `start at t = ${state.t} of ${m.meta.T}`;
    };
    const restore = async () => {
      go.disabled = true;
      await state.shown; // x_t of the level the slider shows
      const a1 = await run(m, state.xt, state.t, false);
      const a2 = await run(m, state.xt, state.t, true);
      state.last = { name: state.name, t: state.t, x0: state.x0, naive: a1.x0, improved: a2.x0, ms: a2.ms, msNaive: a1.ms };
      timing.textContent = `In this page: Algorithm 2 took ${a2.ms.toFixed(0)} ms for ${state.t} steps (Algorithm 1: ${a1.ms.toFixed(0)} ms).`;
      for (let k = 0; k < a2.frames.length; k++) { // replay the steps, one every 120 ms
        for (const [key, r] of [["naive", a1], ["improved", a2]]) {
          const f = r.frames[k];
          paint(views[key].x, f.x, `x<sub>${f.s}</sub>`);
          if (f.x0) paint(views[key].hat, f.x0, `x&#770;<sub>0</sub> = R(x<sub>${f.s}</sub>, ${f.s})`);
        }
        await sleep(120);
      }
      state.runs += 1;
      go.disabled = false;
    };
    const picker = digitPicker(ctx.digits, (x0) => { state.x0 = x0; state.shown = show(); });
    root.append(picker.row, top, start.fig, cols, timing);
    picker.choose(0);
    state.restore = restore;
    state.views = views;
    return state;
  }

  // Chapter 6: new digits from a random flat colour (blur) or a random 2x2 image (super-resolution).
  async function generateFigure(root, names, ctx) {
    const state = { name: names[0], runs: 0 };
    let m = await model(state.name);
    const top = el("div", "colddiff-live-row");
    const noise = el("label", "colddiff-live-label");
    const box = el("input");
    box.type = "checkbox";
    box.checked = true;
    noise.append(box, document.createTextNode(" symmetry noise"));
    const setNoise = () => {
      noise.style.display = m.meta.noise_std > 0 ? "" : "none";
      noise.lastChild.textContent = ` symmetry noise (σ = ${m.meta.noise_std})`;
    };
    setNoise();
    if (names.length > 1) top.appendChild(select(names, async (n) => { m = await model(n); state.name = n; setNoise(); }));
    const go = button("generate", () => generate());
    top.append(noise, go);
    const row = el("div", "colddiff-live-columns");
    const xT = canvas(128, "x<sub>T</sub>"), xs = canvas(128, "x<sub>s</sub>"), out = canvas(128, "x<sub>0</sub>");
    row.append(xT.fig, xs.fig, out.fig);
    const gallery = el("div", "colddiff-live-gallery");
    const timing = el("p", "colddiff-live-timing");
    root.append(top, row, el("div", "colddiff-live-label", "the last ones:"), gallery, timing);

    const normal = () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
    function prior() { // x_T = from_latent(mean + L eps), clamped to [-1, 1], plus the symmetry noise
      const p = m.meta.prior, [C, H, W] = m.meta.shape;
      const d = p.mean.length, eps = Array.from({ length: d }, normal);
      const z = p.mean.map((mu, i) => mu + p.scale_tril[i].reduce((acc, l, j) => acc + l * eps[j], 0));
      const img = new Float32Array(C * H * W);
      for (let c = 0; c < C; c++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            let v;
            if (p.latent === "colour") v = z[c];
            else { const f = p.factor, w = W / f; v = z[c * (H / f) * w + Math.floor(y / f) * w + Math.floor(x / f)]; }
            img[c * H * W + y * W + x] = Math.max(-1, Math.min(1, v));
          }
      if (box.checked && m.meta.noise_std > 0) for (let i = 0; i < img.length; i++) img[i] += m.meta.noise_std * normal();
      return img;
    }
    const generate = async () => {
      go.disabled = true;
      const start = prior();
      paint(xT, start, "x<sub>T</sub>, drawn from the prior");
      const r = await run(m, start, m.meta.T, true);
      state.last = { name: state.name, xT: start, x0: r.x0, ms: r.ms };
      timing.textContent = `In this page: Algorithm 2 took ${r.ms.toFixed(0)} ms for ${m.meta.T} steps.`;
      for (const f of r.frames) { paint(xs, f.x, `x<sub>${f.s}</sub>`); await sleep(60); }
      paint(out, r.x0, "x<sub>0</sub>, a new digit");
      const g = canvas(48);
      paint(g, r.x0);
      gallery.prepend(g.fig);
      while (gallery.children.length > 12) gallery.lastChild.remove();
      state.runs += 1;
      go.disabled = false;
    };
    state.generate = generate;
    state.views = { xT, out };
    return state;
  }

  const FIGURES = { degrade: degradeFigure, restore: restoreFigure, generate: generateFigure };

  async function mount(root) {
    const mode = root.dataset.mode, names = (root.dataset.models || "").split(",").map((s) => s.trim()).filter(Boolean);
    const entry = { root, mode, names, state: null, error: null };
    api.components.push(entry);
    try {
      if (!FIGURES[mode]) throw new Error("data-mode must be degrade, restore or generate, got " + mode);
      const ctx = await book();
      root.innerHTML = "";
      root.classList.add("colddiff-live-on");
      entry.state = await FIGURES[mode](root, names, ctx);
    } catch (err) {
      entry.error = String(err);
      api.errors.push(entry.error);
      root.appendChild(el("p", "colddiff-live-error", "The live figure could not start: " + err));
      console.error("colddiff-live:", err);
    }
  }

  function start() {
    api.ready = Promise.all(Array.from(document.querySelectorAll("div.colddiff-live")).map(mount));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

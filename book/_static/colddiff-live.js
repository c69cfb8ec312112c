/* Cold diffusion live in the page: the book's models run in the reader's browser, with no kernel.
 *
 * A Markdown cell holds <div class="colddiff-live" data-mode="degrade|restore|generate"
 * data-models="mnist-blur,...">; this script turns it into a figure. The models are the zoo's,
 * exported by `python -m colddiff_lib export` into _static/live/ (step.onnx: one step of Algorithm 1
 * or 2; degrade.onnx: D(x0, t); model.json: T, shape, and a generator's prior in one linear form, with
 * the level it starts from), and run by onnxruntime-web
 * (vendored from npm into _static/ort/ at build time, one thread, WebAssembly).
 *
 * Images are Float32Arrays of C*H*W values in [-1, 1], shown as grey levels round((x + 1) * 127.5).
 * window.colddiffLive exposes every figure's state and its last run (for the browser test), and
 * window.__colddiffErrors every error a figure caught (also shown in the figure itself).
 *
 * Each model's graphs run once on a dummy input when they load (warm-up), so that the reader's first
 * press costs what the later ones do. Slider updates go through a queue that keeps only the newest
 * request, so an older level never paints after a newer one.
 */
(function () {
  "use strict";
  const here = document.currentScript ? document.currentScript.src.replace(/[^/]*$/, "") : "_static/";
  const LIVE = here + "live/";
  // hooks: for the browser test only. delay(kind, value) -> ms to wait before a graph call;
  // fail(kind, value) -> true to make a graph call throw ("degrade", "step", "prior"), or a handler
  // (kind "handler", value: what it does, e.g. "restoring").
  const api = { components: [], ready: null, errors: [], warmup: {}, hooks: { delay: null, fail: null } };
  window.colddiffLive = api;
  window.__colddiffErrors = api.errors;

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

  // A model: its sessions, and a queue so that its graphs never run two calls at once.
  function model(name) {
    if (!models[name]) {
      const ort = window.ort;
      const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
      models[name] = Promise.all([
        fetchJSON(LIVE + name + "/model.json"),
        ort.InferenceSession.create(LIVE + name + "/step.onnx", opts),
        ort.InferenceSession.create(LIVE + name + "/degrade.onnx", opts),
      ]).then(async ([meta, step, degrade]) => {
        const m = { name, meta, step, degrade, size: meta.shape[0] * meta.shape[1] * meta.shape[2], queue: Promise.resolve() };
        await warmUp(m);
        return m;
      });
    }
    return models[name];
  }

  // One dummy run, timed: D(grey, T), then Algorithm 2 from it down to 0, as a press would run it.
  // The first calls of a session prepare its kernels and buffers, and the browser compiles the
  // WebAssembly that runs often into faster code; without this, both land on the reader's first press.
  async function warmUp(m) {
    const start = performance.now();
    let x = await degrade(m, new Float32Array(m.size), m.meta.T, true);
    for (let s = m.meta.T; s >= 1; s--) x = (await stepOnce(m, x, s, true, true)).x;
    api.warmup[m.name] = performance.now() - start;
  }

  function exec(m, session, feeds) {
    const p = m.queue.then(() => session.run(feeds));
    m.queue = p.catch(() => {});
    return p;
  }

  async function hook(kind, value, warm) {
    if (warm) return;
    const h = api.hooks;
    if (h.delay) {
      const ms = h.delay(kind, value);
      if (ms > 0) await sleep(ms);
    }
    if (h.fail && h.fail(kind, value)) throw new Error(`${kind} failed (a test hook asked for it)`);
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

  async function degrade(m, x0, t, warm) {
    await hook("degrade", t, warm);
    const out = await exec(m, m.degrade, { x0: tensorOf(m, [x0]), t: levels(1, t) });
    return out.x_t.data.slice();
  }

  async function stepOnce(m, x, s, improved, warm) {
    await hook("step", s, warm);
    const flag = new window.ort.Tensor("float32", new Float32Array([improved ? 1 : 0]), [1]);
    const out = await exec(m, m.step, { x: tensorOf(m, [x]), s: levels(1, s), improved: flag });
    return { x: out.x_next.data.slice(), x0: out.x0_hat.data.slice() };
  }

  // Run Algorithm 2 (improved) or 1 from x_t at level t down to 0; keep every iterate and estimate.
  async function run(m, x, t, improved) {
    const frames = [{ s: t, x: x, x0: null }];
    const start = performance.now();
    for (let s = t; s >= 1; s--) {
      const out = await stepOnce(m, x, s, improved);
      frames[frames.length - 1].x0 = out.x0;
      x = out.x;
      frames.push({ s: s - 1, x: x, x0: null });
    }
    return { x0: x, frames, ms: performance.now() - start };
  }

  // fn(...args) one call at a time; while one runs, only the newest request waits (older ones are
  // dropped), so the last thing painted is what the last request asked for. Returns a promise that
  // settles when the queue is empty; a failing call rejects it (the figure's guard reports it).
  function latest(fn) {
    let pending = null, running = null;
    return function request(...args) {
      pending = args;
      if (!running) {
        running = (async () => {
          try {
            while (pending) {
              const a = pending;
              pending = null;
              await fn(...a);
            }
          } finally {
            running = null;
            pending = null;
          }
        })();
      }
      return running;
    };
  }

  // --- errors -------------------------------------------------------------------------------------
  // Every handler runs through guard(): an error (thrown or rejected) is recorded in
  // window.__colddiffErrors, shown in the figure and logged, and the figure stays usable.
  function report(entry, where, err) {
    const text = `${entry.mode} figure, ${where}: ${err && err.message ? err.message : err}`;
    api.errors.push(text);
    entry.error = text;
    if (entry.errorBox) {
      entry.errorBox.textContent = "Something went wrong in this figure (" + text + ").";
      entry.errorBox.hidden = false;
    }
    console.error("colddiff-live:", text, err);
  }

  function guard(entry, where, fn) {
    return function (...args) {
      try {
        if (api.hooks.fail && api.hooks.fail("handler", where)) throw new Error(`${where} failed (a test hook asked for it)`);
        const r = fn.apply(this, args);
        if (r && typeof r.then === "function") return r.catch((err) => report(entry, where, err));
        return r;
      } catch (err) {
        report(entry, where, err);
      }
    };
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
    return { fig, canvas: c, caption: cap, label: label || "" };
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
    view.canvas.classList.remove("colddiff-live-blank");
    view.values = img;
    if (caption !== undefined) view.caption.innerHTML = caption;
  }

  // The neutral state of an output: nothing painted (transparent), a light pattern behind it.
  function blank(view, caption) {
    const ctx = view.canvas.getContext("2d");
    ctx.clearRect(0, 0, view.canvas.width, view.canvas.height);
    view.canvas.classList.add("colddiff-live-blank");
    view.values = null;
    view.caption.innerHTML = caption === undefined ? view.label : caption;
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
  // onpick(x0, label) when a digit is picked or drawn; onclear() when the pad is cleared.
  function digitPicker(entry, digits, onpick, onclear) {
    const row = el("div", "colddiff-live-picker");
    const images = digits.pixels.map((p) => Float32Array.from(p, (g) => g / 127.5 - 1));
    let chosen = -1;
    const highlight = (i) => {
      chosen = i;
      thumbs.forEach((v, j) => v.canvas.classList.toggle("colddiff-live-chosen", i === j));
    };
    const thumbs = images.map((img, i) => {
      const v = canvas(28);
      paint(v, img);
      v.canvas.title = "held-out digit " + digits.labels[i];
      v.canvas.addEventListener("click", guard(entry, "picking a digit", () => choose(i)));
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
      ev.preventDefault();
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
      highlight(-1); // the figure now shows the drawing, not the digit picked before
      return onpick(drawn.slice(), "your digit");
    };
    pad.canvas.addEventListener("pointerdown", guard(entry, "drawing", (e) => { down = true; return ink(e); }));
    pad.canvas.addEventListener("pointermove", guard(entry, "drawing", (e) => (down ? ink(e) : undefined)));
    window.addEventListener("pointerup", () => { down = false; });
    row.appendChild(button("clear", guard(entry, "clearing the drawing", () => {
      drawn.fill(-1);
      paint(pad, drawn);
      highlight(-1);
      return onclear();
    })));
    function choose(i) {
      highlight(i);
      return onpick(images[i].slice(), "held-out digit " + digits.labels[i]);
    }
    return { row, images, choose, pad, drawn, chosen: () => chosen };
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const PICK = "pick a digit or draw one";

  // --- the three figures --------------------------------------------------------------------------
  // Chapter 2: a slider over t for each model's degradation.
  async function degradeFigure(entry, root, names, ctx) {
    const state = { x0: null, t: {}, views: {}, painted: {}, updated: 0, updating: Promise.resolve() };
    const rows = el("div", "colddiff-live-rows");
    const ms = await Promise.all(names.map(model));
    const update = latest(async () => {
      if (!state.x0) return;
      const x0 = state.x0, wanted = names.map((name) => state.t[name]);
      const images = [];
      for (const k of names.keys()) images.push(await degrade(ms[k], x0, wanted[k]));
      if (x0 !== state.x0) return; // cleared or replaced meanwhile: the next request paints
      names.forEach((name, k) => {
        const t = wanted[k];
        paint(state.views[name], images[k], `D(x<sub>0</sub>, ${t}), t = ${t} of ${ms[k].meta.T}`);
        state.painted[name] = t;
      });
      state.updated += 1;
    });
    const request = () => (state.updating = update());
    names.forEach((name, k) => {
      const m = ms[k];
      const row = el("div", "colddiff-live-row");
      row.appendChild(el("div", "colddiff-live-label", `<strong>${m.meta.degradation.name}</strong> (${name}, T = ${m.meta.T})`));
      state.t[name] = Math.ceil(m.meta.T / 2);
      const s = slider(0, m.meta.T, state.t[name], guard(entry, "moving a slider", (t) => { state.t[name] = t; return request(); }));
      s.setAttribute("aria-label", "level t of " + m.meta.degradation.name);
      row.appendChild(s);
      state.views[name] = canvas(128);
      row.appendChild(state.views[name].fig);
      rows.appendChild(row);
    });
    const picker = digitPicker(entry, ctx.digits, (x0) => { state.x0 = x0; return request(); }, () => {
      state.x0 = null;
      names.forEach((name) => { blank(state.views[name], PICK); delete state.painted[name]; });
      return request();
    });
    root.append(picker.row, rows);
    await picker.choose(0);
    state.picker = picker;
    return state;
  }

  // Chapter 4: Algorithms 1 and 2 side by side from the same x_t, x0 estimates underneath.
  async function restoreFigure(entry, root, names, ctx) {
    const state = { x0: null, name: names[0], t: null, runs: 0, shown: Promise.resolve() };
    const colours = ctx.info.colours;
    const top = el("div", "colddiff-live-row");
    const start = canvas(128, "x<sub>t</sub>");
    const level = el("span", "colddiff-live-label");
    await Promise.all(names.map(model)); // every model of the menu loaded and warmed up
    let m = await model(state.name);
    const firstLevel = (T) => Math.min(T, 5); // the blur erases a digit within a few steps: start where it shows
    state.t = firstLevel(m.meta.T);
    const show = latest(async () => {
      const mm = m, t = state.t, x0 = state.x0;
      level.textContent = `start at t = ${t} of ${mm.meta.T}`;
      if (!x0) {
        state.xt = null;
        blank(start, PICK);
        return;
      }
      const xt = await degrade(mm, x0, t);
      if (mm !== m || t !== state.t || x0 !== state.x0) return; // a newer request follows
      state.xt = xt;
      state.xtLevel = t;
      paint(start, xt, `x<sub>t</sub> = D(x<sub>0</sub>, ${t})`);
    });
    const request = () => (state.shown = show());
    const s = slider(1, m.meta.T, state.t, guard(entry, "moving the slider", (t) => { state.t = t; return request(); }));
    s.setAttribute("aria-label", "starting level t");
    const go = button("restore", guard(entry, "restoring", () => restore()));
    if (names.length > 1) top.appendChild(select(names, guard(entry, "choosing a model", async (n) => {
      m = await model(n);
      state.name = n;
      s.max = m.meta.T;
      s.value = state.t = firstLevel(m.meta.T);
      return request();
    })));
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
    const neutral = () => {
      for (const v of Object.values(views)) { blank(v.x); blank(v.hat); }
      timing.textContent = "";
    };
    neutral();
    const restore = async () => {
      go.disabled = true;
      try {
        await state.shown; // x_t of the level the slider shows
        if (!state.xt) return; // nothing picked or drawn
        const mm = m, name = state.name, t = state.xtLevel, xt = state.xt, x0 = state.x0;
        const a1 = await run(mm, xt, t, false);
        const a2 = await run(mm, xt, t, true);
        const stale = () => state.x0 !== x0; // the reader cleared, picked or drew meanwhile
        if (stale()) return;
        state.last = { name, t, x0, naive: a1.x0, improved: a2.x0, ms: a2.ms, msNaive: a1.ms };
        timing.textContent = `In this page: Algorithm 2 took ${a2.ms.toFixed(0)} ms for ${t} steps (Algorithm 1: ${a1.ms.toFixed(0)} ms).`;
        for (let k = 0; k < a2.frames.length; k++) { // replay the steps, one every 120 ms
          if (stale()) return;
          for (const [key, r] of [["naive", a1], ["improved", a2]]) {
            const f = r.frames[k];
            paint(views[key].x, f.x, `x<sub>${f.s}</sub>`);
            if (f.x0) paint(views[key].hat, f.x0, `x&#770;<sub>0</sub> = R(x<sub>${f.s}</sub>, ${f.s})`);
          }
          await sleep(120);
        }
        state.runs += 1;
      } finally {
        go.disabled = !state.x0;
      }
    };
    const picker = digitPicker(entry, ctx.digits, (x0) => {
      state.x0 = x0;
      go.disabled = false;
      return request();
    }, () => {
      state.x0 = null;
      go.disabled = true;
      neutral();
      return request();
    });
    root.append(picker.row, top, start.fig, cols, timing);
    await picker.choose(0);
    Object.assign(state, { restore, views, start, button: go, picker, slider: s });
    return state;
  }

  // Chapter 6: new digits from a start drawn from the model's prior (a flat colour, a tiny image, or an
  // image below T, all in one linear form), restored from the prior's level by the card's sampler.
  async function generateFigure(entry, root, names, ctx) {
    const state = { name: names[0], runs: 0 };
    await Promise.all(names.map(model)); // every model of the menu loaded and warmed up
    let m = await model(state.name);
    const top = el("div", "colddiff-live-row");
    const noise = el("label", "colddiff-live-label");
    const box = el("input");
    box.type = "checkbox";
    box.checked = true;
    noise.append(box, document.createTextNode(" symmetry noise"));
    const setNoise = () => {
      noise.style.display = m.meta.prior.noise_std > 0 ? "" : "none";
      noise.lastChild.textContent = ` symmetry noise (σ = ${m.meta.prior.noise_std})`;
    };
    setNoise();
    if (names.length > 1) top.appendChild(select(names, guard(entry, "choosing a model", async (n) => {
      m = await model(n);
      state.name = n;
      setNoise();
    })));
    const go = button("generate", guard(entry, "generating", () => generate()));
    top.append(noise, go);
    const row = el("div", "colddiff-live-columns");
    const xT = canvas(128, "x<sub>T</sub>"), xs = canvas(128, "x<sub>s</sub>"), out = canvas(128, "x<sub>0</sub>");
    row.append(xT.fig, xs.fig, out.fig);
    [xT, xs, out].forEach((v) => blank(v));
    const gallery = el("div", "colddiff-live-gallery");
    const timing = el("p", "colddiff-live-timing");
    root.append(top, row, el("div", "colddiff-live-label", "the last ones:"), gallery, timing);

    // mulberry32: uniforms in [0, 1) from a 32-bit seed, so that a test can replay the same draws
    const seeded = (seed) => () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    // A start, in the one form model.json gives for every degradation (colddiff_lib.export.page_prior):
    // z = means[k] + scale_trils[k] eps with k drawn by the mixture's weights, the image
    // clamp(offset + z basis) to [-1, 1], plus the symmetry noise when asked for.
    function prior(mm, withNoise, random = Math.random) {
      const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      const p = mm.meta.prior, n = p.offset.length;
      const u = random();
      let k = 0, acc = p.weights[0];
      while (k < p.weights.length - 1 && u >= acc) acc += p.weights[++k];
      const mean = p.means[k], L = p.scale_trils[k], d = mean.length, eps = Array.from({ length: d }, normal);
      const z = mean.map((mu, i) => mu + L[i].reduce((acc, l, j) => acc + l * eps[j], 0));
      const img = new Float32Array(n);
      for (let c = 0; c < n; c++) {
        let v = p.offset[c];
        for (let i = 0; i < d; i++) v += z[i] * p.basis[i][c];
        img[c] = Math.max(-1, Math.min(1, v));
      }
      if (withNoise && p.noise_std > 0) for (let c = 0; c < n; c++) img[c] += p.noise_std * normal();
      return img;
    }
    const generate = async () => {
      go.disabled = true;
      try {
        const mm = m, name = state.name;
        await hook("prior", 0);
        const p = mm.meta.prior, level = p.level, improved = p.algorithm !== "naive";
        const start = prior(mm, box.checked);
        paint(xT, start, `x<sub>${level === mm.meta.T ? "T" : level}</sub>, drawn from the prior`);
        const r = await run(mm, start, level, improved);
        state.last = { name, xT: start, x0: r.x0, ms: r.ms, level };
        timing.textContent = `In this page: Algorithm ${improved ? 2 : 1} took ${r.ms.toFixed(0)} ms for ${level} steps.`;
        for (const f of r.frames) { paint(xs, f.x, `x<sub>${f.s}</sub>`); await sleep(60); }
        paint(out, r.x0, "x<sub>0</sub>, a new digit");
        const g = canvas(48);
        paint(g, r.x0);
        gallery.prepend(g.fig);
        while (gallery.children.length > 12) gallery.lastChild.remove();
        state.runs += 1;
      } finally {
        go.disabled = false;
      }
    };
    // For the browser test: n starts of the current model as base64 float32 [n, C, H, W], the same
    // ones for the same seed (the button draws with Math.random).
    state.drawStarts = (n, withNoise, seed) => {
      const size = m.size, all = new Float32Array(n * size), random = seeded(seed);
      for (let i = 0; i < n; i++) all.set(prior(m, withNoise, random), i * size);
      const bytes = new Uint8Array(all.buffer);
      let s = "";
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(s);
    };
    state.generate = generate;
    state.views = { xT, xs, out };
    state.button = go;
    return state;
  }

  const FIGURES = { degrade: degradeFigure, restore: restoreFigure, generate: generateFigure };

  async function mount(root) {
    const mode = root.dataset.mode, names = (root.dataset.models || "").split(",").map((s) => s.trim()).filter(Boolean);
    const entry = { root, mode, names, state: null, error: null, errorBox: null };
    api.components.push(entry);
    try {
      if (!FIGURES[mode]) throw new Error("data-mode must be degrade, restore or generate, got " + mode);
      const ctx = await book();
      root.innerHTML = "";
      root.classList.add("colddiff-live-on");
      entry.errorBox = el("p", "colddiff-live-error");
      entry.errorBox.hidden = true;
      entry.errorBox.setAttribute("role", "alert");
      entry.state = await FIGURES[mode](entry, root, names, ctx);
      root.appendChild(entry.errorBox);
    } catch (err) {
      report(entry, "starting", err);
      if (!entry.errorBox || !entry.errorBox.isConnected) {
        root.appendChild(el("p", "colddiff-live-error", "The live figure could not start: " + err));
      }
    }
  }

  function start() {
    api.ready = Promise.all(Array.from(document.querySelectorAll("div.colddiff-live")).map(mount));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

// A small time-series chart on a canvas: a fixed window of samples, one or more series on one
// y scale starting at zero, light grid lines labelled with their values. No dependency.

const GRID_LINES = 3;

/** Rounds up to 1, 2 or 5 times a power of ten, so the grid labels read well. */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const unit = [1, 2, 5, 10].find((m) => m * power >= value);
  return unit * power;
}

function label(value) {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(value < 10 ? 1 : 0)}`;
}

export class TimeChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{ series: { color: string, fill?: boolean }[], capacity?: number }} options
   */
  constructor(canvas, { series, capacity = 120 }) {
    this.canvas = canvas;
    this.series = series;
    this.capacity = capacity;
    this.samples = series.map(() => []);
    this.width = 0;
    this.height = 0;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const { width, height } = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.width = width;
    this.height = height;
    this.canvas.width = Math.max(1, Math.round(width * ratio));
    this.canvas.height = Math.max(1, Math.round(height * ratio));
    this.ratio = ratio;
    this.draw();
  }

  /** Adds one sample per series (null for none) and redraws. */
  push(values) {
    values.forEach((v, i) => {
      const s = this.samples[i];
      s.push(Number.isFinite(v) ? v : null);
      if (s.length > this.capacity) s.shift();
    });
    this.draw();
  }

  draw() {
    const { width: w, height: h } = this;
    if (!w || !h) return;
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const top = 16;
    const bottom = h - 2;
    const peak = Math.max(0, ...this.samples.flat().filter((v) => v !== null));
    const max = niceCeiling(peak);
    const y = (v) => bottom - (v / max) * (bottom - top);
    const x = (i) => (i / (this.capacity - 1)) * w;

    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    for (let g = 1; g <= GRID_LINES; g++) {
      const v = (max * g) / GRID_LINES;
      const gy = Math.round(y(v)) + 0.5;
      ctx.strokeStyle = "rgba(15, 23, 42, 0.08)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(0, gy);
      ctx.lineTo(w, gy);
      ctx.stroke();
      ctx.fillStyle = "rgba(71, 85, 105, 0.8)";
      ctx.fillText(label(v), 4, gy - 2);
    }
    ctx.strokeStyle = "rgba(15, 23, 42, 0.18)";
    ctx.beginPath();
    ctx.moveTo(0, bottom + 0.5);
    ctx.lineTo(w, bottom + 0.5);
    ctx.stroke();

    this.series.forEach((series, s) => {
      const data = this.samples[s];
      const offset = this.capacity - data.length;
      const points = [];
      data.forEach((v, i) => v !== null && points.push([x(offset + i), y(v)]));
      if (points.length < 2) return;
      if (series.fill) {
        ctx.beginPath();
        ctx.moveTo(points[0][0], bottom);
        for (const [px, py] of points) ctx.lineTo(px, py);
        ctx.lineTo(points[points.length - 1][0], bottom);
        ctx.closePath();
        const gradient = ctx.createLinearGradient(0, top, 0, bottom);
        gradient.addColorStop(0, `${series.color}55`);
        gradient.addColorStop(1, `${series.color}08`);
        ctx.fillStyle = gradient;
        ctx.fill();
      }
      ctx.beginPath();
      points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.strokeStyle = series.color;
      ctx.lineWidth = 1.75;
      ctx.lineJoin = "round";
      ctx.stroke();
    });
  }
}

// A short two-note chime for the teacher when a classroom raises its hand, made with WebAudio
// (no sound file to fetch). Browsers start audio only after a click on the page, so the first
// click or key press anywhere prepares it.

let context = null;

function prepare() {
  if (!context && window.AudioContext) context = new AudioContext();
  if (context && context.state === 'suspended') context.resume().catch(() => {});
}

export function allowSoundCues() {
  for (const event of ['pointerdown', 'keydown']) {
    window.addEventListener(event, prepare, { capture: true, passive: true });
  }
}

export function chime() {
  try {
    prepare();
  } catch {
    return; // no audio output: the visual cue is enough
  }
  if (!context || context.state !== 'running') return;
  const start = context.currentTime + 0.01;
  [880, 1320].forEach((frequency, i) => {
    const at = start + i * 0.14;
    const tone = context.createOscillator();
    const gain = context.createGain();
    tone.type = 'sine';
    tone.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.16);
    tone.connect(gain).connect(context.destination);
    tone.start(at);
    tone.stop(at + 0.18);
  });
}

// The live page's capture worklet (an AudioWorklet: it runs on the audio thread, so no sample is
// lost when the page is busy): the microphone's samples, mono, in blocks of 960 (20 ms at 48 kHz)
// posted to the page, which encodes them to Opus.
"use strict";

class LiveCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(960);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      // Averaged to mono: a phone's stereo microphone is one voice.
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      this.block[this.filled++] = sum / channels.length;
      if (this.filled === this.block.length) {
        this.port.postMessage(this.block, [this.block.buffer]);
        this.block = new Float32Array(960);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("live-capture", LiveCapture);

// The aigc playground: pick a generator, fill the fields its JSON schema lists, generate.
// Plain browser JavaScript, no build step; it speaks only the server's public HTTP API.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { name: null, schema: null, modality: null, chat: false, conversation: [] };
// Fields a chat takes from its conversation rather than from the form.
const CHAT_OWN = new Set(["prompt", "messages", "raw", "n"]);
// Chat request fields under their OpenAI names.
const OPENAI_NAMES = { max_new_tokens: "max_tokens" };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// -- generators and their fields ------------------------------------------------------

async function loadGenerators() {
  const { data } = await (await api("/v1/generators")).json();
  const select = $("generator");
  select.replaceChildren(
    ...data.map((g) => new Option(`${g.name} (${g.modality})`, g.name)),
  );
  state.cards = Object.fromEntries(data.map((g) => [g.name, g]));
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted && state.cards[wanted]) select.value = wanted;
  if (select.value) await selectGenerator(select.value);
}

async function selectGenerator(name) {
  const schema = await (await api(`/v1/generators/${encodeURIComponent(name)}`)).json();
  Object.assign(state, {
    name,
    schema,
    modality: schema["x-modality"],
    chat: schema["x-modality"] === "text" && "messages" in schema.properties,
  });
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  $("description").textContent = (state.cards[name] || {}).description || "";
  buildForm(schema);
  $("chat").hidden = !state.chat;
  $("generate").hidden = state.chat;
  $("result").replaceChildren();
  status("");
}

function kinds(prop) {
  const out = [];
  for (const part of [prop, ...(prop.anyOf || [])]) {
    if (Array.isArray(part.type)) out.push(...part.type);
    else if (part.type) out.push(part.type);
  }
  return out;
}

function buildForm(schema) {
  const form = $("fields");
  form.replaceChildren();
  for (const [field, prop] of Object.entries(schema.properties)) {
    if (field === "messages" || (state.chat && CHAT_OWN.has(field))) continue;
    const types = kinds(prop);
    const label = document.createElement("label");
    let input;
    if (types.includes("boolean")) {
      label.className = "check";
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = prop.default === true;
    } else if ((types.includes("integer") || types.includes("number")) && !types.includes("string")) {
      input = document.createElement("input");
      input.type = "number";
      input.step = types.includes("integer") ? "1" : "any";
      for (const [attr, key] of [["min", "minimum"], ["max", "maximum"]]) {
        if (prop[key] !== undefined) input[attr] = prop[key];
      }
      if (prop.default !== null && prop.default !== undefined) input.value = prop.default;
      else input.placeholder = "default";
    } else if (types.includes("array") && !types.includes("string")) {
      input = document.createElement("input");
      input.placeholder = "a|b";
      input.value = (prop.default || []).join("|");
    } else {
      input = document.createElement(field === "prompt" || field === "system" ? "textarea" : "input");
      if (input.tagName === "TEXTAREA") input.rows = 3;
      if (prop.maxLength) input.maxLength = prop.maxLength;
      if (typeof prop.default === "string") input.value = prop.default;
    }
    input.name = field;
    input.dataset.kind = types.includes("boolean") ? "boolean"
      : types.includes("array") && !types.includes("string") ? "array"
      : types.includes("integer") && !types.includes("string") ? "integer"
      : types.includes("number") && !types.includes("string") ? "number" : "string";
    input.dataset.nullable = String(types.includes("null"));
    const name = document.createElement("span");
    name.textContent = field;
    if (input.type === "checkbox") label.append(input, name);
    else label.append(name, input);
    if (prop.description) {
      const hint = document.createElement("span");
      hint.className = "hint";
      hint.textContent = prop.description;
      label.append(hint);
    }
    form.append(label);
  }
}

function readFields() {
  const out = {};
  for (const input of $("fields").elements) {
    const { kind } = input.dataset;
    if (kind === "boolean") {
      out[input.name] = input.checked;
      continue;
    }
    const text = input.value.trim();
    if (text === "") continue; // the generator's default
    if (kind === "integer") out[input.name] = Number.parseInt(text, 10);
    else if (kind === "number") out[input.name] = Number(text);
    else if (kind === "array") out[input.name] = text.split("|").filter(Boolean);
    else out[input.name] = input.value;
  }
  return out;
}

// -- images, audio and plain text ------------------------------------------------------

async function generate() {
  const button = $("generate");
  button.disabled = true;
  const result = $("result");
  result.replaceChildren();
  const started = performance.now();
  status("generating…");
  try {
    const fields = readFields();
    if (state.modality === "text") {
      await streamText(fields, result);
    } else {
      const path = `/v1/generate/${encodeURIComponent(state.name)}`;
      const answer = await (await api(path, { method: "POST", body: JSON.stringify(fields) })).json();
      if (state.modality === "image") showImages(answer, result);
      else showAudio(answer, result);
    }
    status(`done in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  } catch (error) {
    status(error.message, true);
  } finally {
    button.disabled = false;
  }
}

function showImages(answer, result) {
  const grid = document.createElement("div");
  grid.className = "grid";
  for (const data of answer.images) {
    const img = document.createElement("img");
    img.alt = `${state.name} image`;
    img.src = `data:image/png;base64,${data}`;
    grid.append(img);
  }
  result.append(grid);
}

function showAudio(answer, result) {
  answer.audio.forEach((data, i) => {
    const clip = document.createElement("div");
    clip.className = "clip";
    const player = document.createElement("audio");
    player.controls = true;
    player.src = `data:audio/wav;base64,${data}`;
    const title = document.createElement("div");
    title.className = "muted";
    title.textContent = `clip ${i + 1} · ${answer.sample_rate} Hz`;
    clip.append(title, player);
    result.append(clip);
  });
  if (answer.spectrogram) {
    const img = document.createElement("img");
    img.className = "spectrogram";
    img.alt = "spectrogram";
    img.src = `data:image/png;base64,${answer.spectrogram}`;
    result.append(img);
  }
}

async function streamText(fields, result) {
  const texts = [];
  const path = `/v1/generate/${encodeURIComponent(state.name)}?stream=true`;
  const response = await api(path, { method: "POST", body: JSON.stringify(fields) });
  for await (const event of serverEvents(response)) {
    if (!texts[event.index]) {
      texts[event.index] = document.createElement("pre");
      result.append(texts[event.index]);
    }
    texts[event.index].textContent += event.text;
  }
}

// Server-sent events of a fetch() response (EventSource cannot POST): parsed data objects.
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error) throw new Error(event.error.message);
      yield event;
    }
  }
}

// -- chat ---------------------------------------------------------------------------------

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `message ${role}`;
  div.textContent = text;
  $("chat-log").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

async function send(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || $("send").disabled) return;
  input.value = "";
  $("send").disabled = true;
  state.conversation.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  reply.dataset.chunks = "0";
  const started = performance.now();
  let first = null;
  let usage = null;
  status("thinking…");
  try {
    const fields = readFields();
    const body = { model: state.name, stream: true, stream_options: { include_usage: true } };
    const messages = [...state.conversation];
    if (fields.system) messages.unshift({ role: "system", content: fields.system });
    delete fields.system;
    for (const [field, value] of Object.entries(fields)) body[OPENAI_NAMES[field] || field] = value;
    body.messages = messages;
    const response = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body) });
    for await (const chunk of serverEvents(response)) {
      if (chunk.usage) usage = chunk.usage;
      const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (!piece) continue;
      if (first === null) first = performance.now();
      reply.textContent += piece;
      reply.dataset.chunks = String(Number(reply.dataset.chunks) + 1);
      reply.scrollIntoView({ block: "end" });
    }
    state.conversation.push({ role: "assistant", content: reply.textContent });
    const seconds = (performance.now() - started) / 1000;
    const tokens = usage ? usage.completion_tokens : Number(reply.dataset.chunks);
    const firstMs = first === null ? "-" : `${Math.round(first - started)} ms`;
    status(`${tokens} tokens in ${seconds.toFixed(2)} s (${(tokens / seconds).toFixed(1)} tokens/s), first after ${firstMs}`);
  } catch (error) {
    state.conversation.pop();
    reply.remove();
    status(error.message, true);
  } finally {
    reply.classList.remove("streaming");
    $("send").disabled = false;
    input.focus();
  }
}

function init() {
  $("api-key").value = localStorage.getItem("aigc-api-key") || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("aigc-api-key", $("api-key").value.trim());
    loadGenerators().catch((e) => status(e.message, true));
  });
  $("generator").addEventListener("change", (e) => {
    state.conversation = [];
    $("chat-log").replaceChildren();
    selectGenerator(e.target.value).catch((err) => status(err.message, true));
  });
  window.addEventListener("hashchange", () => {
    const wanted = decodeURIComponent(location.hash.slice(1));
    if (wanted && wanted !== state.name && state.cards && state.cards[wanted]) {
      $("generator").value = wanted;
      $("generator").dispatchEvent(new Event("change"));
    }
  });
  $("generate").addEventListener("click", generate);
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  $("clear").addEventListener("click", () => {
    state.conversation = [];
    $("chat-log").replaceChildren();
    status("");
  });
  loadGenerators().catch((e) => status(e.message, true));
}

init();

// The chat page: plain JavaScript on the public HTTP API, no build step.
// Answers stream with EventSource, which resends Last-Event-ID by itself when the
// connection drops; after a page reload the stream is opened again and the server
// attaches to the running answer, replaying it from its start.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "chatbot.apiKey";

const state = {
  chatId: null,
  chats: [],
  source: null, // the open EventSource
  lastEventId: null,
  bubble: null, // the assistant message being streamed
  stopping: false,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

let keyWaiters = [];

// Ask for an API key (a 401 came back); resolves once one is entered.
function askForKey() {
  return new Promise((resolve) => {
    keyWaiters.push(resolve);
    const dialog = $("key-dialog");
    if (!dialog.open) {
      $("api-key").value = "";
      dialog.showModal();
      $("api-key").focus();
    }
  });
}

$("key-form").addEventListener("submit", () => {
  const key = $("api-key").value.trim();
  if (!key) return;
  localStorage.setItem(KEY_STORAGE, key);
  const waiters = keyWaiters;
  keyWaiters = [];
  waiters.forEach((resolve) => resolve(key));
});

async function api(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "network", `the server cannot be reached (${err.message})`);
    }
    if (response.status === 401) {
      await askForKey();
      continue;
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(
        response.status,
        error.code || "http_error",
        error.message || `the server answered ${response.status}`,
      );
    }
    return data;
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setStatus(text) {
  $("status").textContent = text;
}

function setBusy(busy) {
  $("stop").disabled = !busy;
  $("send").disabled = busy;
  $("regenerate").disabled = busy || !state.chatId;
  $("messages").setAttribute("aria-busy", busy ? "true" : "false");
}

// ---- rendering ------------------------------------------------------------------------

function renderSources(container, sources) {
  let list = container.querySelector(".sources");
  if (list) list.remove();
  if (!sources || !sources.length) return;
  list = document.createElement("ol");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const source of sources) {
    const item = document.createElement("li");
    const number = document.createElement("span");
    number.className = "n";
    number.textContent = `[${source.index}]`;
    item.append(number);
    const safe = /^https?:\/\//i.test(source.url || "");
    const link = document.createElement(safe ? "a" : "span");
    if (safe) {
      link.href = source.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
    }
    link.textContent = source.title || source.url;
    item.append(link);
    list.append(item);
  }
  container.append(list);
}

function addMessage(role, text, { sources = null, note = "" } = {}) {
  const article = document.createElement("article");
  article.className = `message ${role === "Human" ? "human" : "assistant"}`;
  const who = document.createElement("div");
  who.className = "role";
  who.textContent = role === "Human" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  article.append(who, body);
  if (sources) renderSources(article, sources);
  if (note) setNote(article, note);
  $("messages").append(article);
  scrollDown();
  return article;
}

function setNote(article, note) {
  let element = article.querySelector(".note");
  if (!element) {
    element = document.createElement("div");
    element.className = "note";
    article.append(element);
  }
  element.textContent = note;
}

function scrollDown() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function renderChatList() {
  const list = $("chat-list");
  list.replaceChildren();
  for (const chat of state.chats) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = chat.name;
    button.title = chat.name;
    button.dataset.chatId = chat.id;
    if (chat.id === state.chatId) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => openChat(chat.id));
    item.append(button);
    list.append(item);
  }
}

// ---- chats ------------------------------------------------------------------------------

async function loadChats() {
  state.chats = await api("GET", "/chats/?limit=200");
  renderChatList();
}

async function openChat(chatId) {
  closeStream();
  showError("");
  setStatus("");
  state.chatId = chatId;
  const chat = state.chats.find((c) => c.id === chatId);
  $("chat-title").textContent = chat ? chat.name : "Chat";
  renderChatList();
  history.replaceState(null, "", `#${chatId}`);
  $("messages").replaceChildren();
  setBusy(false);
  try {
    const messages = await api("GET", `/chats/${chatId}/conversations?limit=200`);
    if (state.chatId !== chatId) return;
    for (const m of messages) {
      addMessage(m.role, m.message, {
        sources: m.sources,
        note: m.status === "cancelled" ? "stopped: partial answer" : "",
      });
    }
    // A question without an answer: the answer is running (a reload) or was never asked.
    // Opening the stream attaches to a running answer, or starts one.
    const last = messages[messages.length - 1];
    if (last && last.role === "Human") startStream({});
  } catch (err) {
    showError(err.message);
  }
  $("message").focus();
}

function newChat() {
  closeStream();
  state.chatId = null;
  $("chat-title").textContent = "New chat";
  $("messages").replaceChildren();
  history.replaceState(null, "", location.pathname);
  renderChatList();
  showError("");
  setStatus("");
  setBusy(false);
  $("message").focus();
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  if (!text || state.source) return;
  showError("");
  try {
    if (!state.chatId) {
      const name = text.length > 60 ? `${text.slice(0, 57)}…` : text;
      const chat = await api("POST", "/chats/create", { name });
      state.chats.unshift(chat);
      state.chatId = chat.id;
      $("chat-title").textContent = chat.name;
      history.replaceState(null, "", `#${chat.id}`);
      renderChatList();
    }
    await api("POST", "/conversations/create", {
      chat_id: state.chatId,
      role: "Human",
      message: text,
    });
  } catch (err) {
    showError(err.message);
    return;
  }
  $("message").value = "";
  addMessage("Human", text);
  startStream({});
}

// ---- the answer stream ----------------------------------------------------------------

function streamPath(regenerate) {
  const kind = $("internet").checked ? "inference_internet" : "inference";
  const params = new URLSearchParams();
  if (regenerate) params.set("regenerate", "true");
  if (apiKey()) params.set("api_key", apiKey());
  const query = params.toString();
  return `/conversations/${kind}/${state.chatId}${query ? `?${query}` : ""}`;
}

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
  if (state.bubble) state.bubble.classList.remove("streaming");
  state.bubble = null;
  state.stopping = false;
  setBusy(false);
}

function startStream({ regenerate = false }) {
  closeStream();
  const chatId = state.chatId;
  const path = streamPath(regenerate);
  const source = new EventSource(path);
  state.source = source;
  state.lastEventId = null;
  state.bubble = addMessage("Assistant", "");
  state.bubble.classList.add("streaming");
  setBusy(true);
  setStatus("Waiting for the answer…");
  const bubble = state.bubble;
  const text = bubble.querySelector(".text");
  const remember = (event) => {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
  };

  source.onopen = () => {
    if (state.source !== source) return;
    showError(""); // (re)connected: a "server is restarting" note no longer holds
    setStatus("Answering…");
  };
  source.onmessage = (event) => {
    remember(event);
    text.textContent += event.data;
    scrollDown();
  };
  source.addEventListener("generation", (event) => {
    remember(event);
    const info = JSON.parse(event.data);
    setStatus(info.status === "queued" ? "Queued…" : `Answering (${info.model})…`);
  });
  source.addEventListener("queue", (event) => {
    remember(event);
    const info = JSON.parse(event.data);
    setStatus(`Queued: position ${info.position}…`);
  });
  source.addEventListener("sources", (event) => {
    remember(event);
    const info = JSON.parse(event.data);
    renderSources(bubble, info.sources);
    if (info.degraded) setNote(bubble, "Some sources could not be read.");
  });
  source.addEventListener("restart", (event) => {
    remember(event);
    text.textContent = "";
    setStatus("The worker was lost: the answer starts over…");
  });
  source.addEventListener("done", (event) => {
    remember(event);
    const done = JSON.parse(event.data);
    if (done.message) text.textContent = done.message.message;
    if (done.status === "cancelled") setNote(bubble, "stopped: partial answer");
    else if (done.finish_reason === "length") setNote(bubble, "cut off: the answer reached its length limit");
    const tokens = done.usage ? `${done.usage.completion_tokens} tokens` : "";
    setStatus(done.status === "cancelled" ? "Stopped." : `Done${tokens ? ` (${tokens})` : ""}.`);
    finish(source);
  });
  source.addEventListener("error", (event) => {
    if (event.data) {
      // A named `error` event from the server: the answer failed, and says why.
      remember(event);
      const body = JSON.parse(event.data);
      const error = body.error || {};
      showError(error.message || "the answer failed");
      setStatus("");
      if (error.code === "server_shutdown" || error.code === "unavailable") {
        // Not the answer's fault: EventSource reconnects and resumes by itself.
        return;
      }
      finish(source);
      return;
    }
    if (state.source !== source) return;
    if (source.readyState === EventSource.CONNECTING) {
      setStatus("Connection lost: reconnecting…");
      return;
    }
    // Closed by the browser: a status other than 200 (an error, or 204 at the end).
    diagnose(source, chatId, path);
  });
}

function finish(source) {
  if (state.source !== source) return;
  source.close();
  closeStream();
  loadChats().catch(() => {});
}

// EventSource does not say why a stream was refused: ask the same URL, resuming after the
// last event seen, and read the status and the JSON error.
async function diagnose(source, chatId, path) {
  const headers = {};
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const controller = new AbortController();
  let response;
  try {
    response = await fetch(path, { headers, signal: controller.signal });
  } catch (err) {
    showError(`the server cannot be reached (${err.message})`);
    setStatus("");
    closeStream();
    return;
  }
  if (state.source !== source) {
    controller.abort();
    return;
  }
  if (response.status === 401) {
    controller.abort();
    closeStream();
    await askForKey();
    if (state.chatId === chatId) startStream({});
    return;
  }
  if (response.status === 200) {
    // The stream is there after all (a brief outage): follow it again.
    controller.abort();
    startStream({});
    return;
  }
  if (response.status === 204) {
    // The answer ended while we were away: show what was saved.
    closeStream();
    openChat(chatId);
    return;
  }
  const data = await response.json().catch(() => null);
  const error = (data && data.error) || {};
  showError(error.message || `the server answered ${response.status}`);
  setStatus("");
  if (state.bubble && !state.bubble.querySelector(".text").textContent) state.bubble.remove();
  closeStream();
}

async function stop() {
  if (!state.chatId || state.stopping) return;
  state.stopping = true;
  setStatus("Stopping…");
  try {
    await api("POST", `/conversations/stop/${state.chatId}`);
  } catch (err) {
    if (err.status !== 409) showError(err.message); // 409: it had just ended
  }
}

function regenerate() {
  if (!state.chatId || state.source) return;
  showError("");
  startStream({ regenerate: true });
}

// ---- wiring -----------------------------------------------------------------------------

$("composer").addEventListener("submit", send);
$("message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("new-chat").addEventListener("click", newChat);
$("stop").addEventListener("click", stop);
$("regenerate").addEventListener("click", regenerate);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.source && !$("key-dialog").open) stop();
});

(async () => {
  setBusy(false);
  try {
    await loadChats();
  } catch (err) {
    showError(err.message);
    return;
  }
  const wanted = location.hash.slice(1);
  if (wanted && state.chats.some((c) => c.id === wanted)) await openChat(wanted);
  else $("message").focus();
})();

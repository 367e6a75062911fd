/*
 * Strike Q&A widget: one tag on a union site adds a chat button.
 *
 *   <script src="https://BOT-HOST/widget.js" data-title="Strike Q&A"
 *           data-greeting="Ask me about the strike" data-color="#b91c1c"
 *           data-position="bottom-right" async></script>
 *
 * Everything it adds lives in one <strike-qa-widget> element with a Shadow DOM,
 * so the host page's styles neither leak in nor get changed; its only global is
 * window.StrikeQA. The chat itself runs in an iframe served by the bot (/widget).
 */
(function () {
  "use strict";
  // document.currentScript is only set while this file first runs (and an
  // `async` script may run late): capture it now.
  var script = document.currentScript;
  if (!script || window.StrikeQA) return;

  var BOT = new URL(script.src, location.href).origin;
  var data = script.dataset;
  var TITLE = (data.title || "Strike Q&A").slice(0, 80);
  var GREETING = (data.greeting || "").slice(0, 300);
  var COLOR = /^#[0-9a-fA-F]{3,8}$/.test(data.color || "") ? data.color : "#b91c1c";
  var LEFT = data.position === "bottom-left";

  var CSS = [
    ":host { all: initial; --accent: " + COLOR + "; }",
    "* { box-sizing: border-box; }",
    ".launcher { position: fixed; bottom: 20px; " + (LEFT ? "left" : "right") + ": 20px;",
    "  z-index: 2147483000; display: flex; align-items: center; gap: 8px; height: 52px;",
    "  padding: 0 18px; border: 0; border-radius: 26px; background: var(--accent); color: #fff;",
    "  font: 600 15px/1 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; cursor: pointer;",
    "  box-shadow: 0 4px 14px rgba(0,0,0,.25); }",
    ".launcher:focus-visible, .close:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }",
    ".launcher svg { width: 22px; height: 22px; fill: currentColor; }",
    ".panel { position: fixed; bottom: 84px; " + (LEFT ? "left" : "right") + ": 20px;",
    "  z-index: 2147483001; width: 380px; height: min(600px, calc(100vh - 110px));",
    "  display: flex; flex-direction: column; background: #fff; border-radius: 14px;",
    "  overflow: hidden; box-shadow: 0 10px 40px rgba(0,0,0,.3); }",
    ".panel[hidden] { display: none; }",
    ".bar { display: flex; align-items: center; justify-content: space-between; gap: 8px;",
    "  padding: 10px 12px 10px 16px; background: var(--accent); color: #fff;",
    "  font: 600 16px/1.2 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }",
    ".title { margin: 0; font: inherit; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }",
    ".close { flex: none; width: 36px; height: 36px; border: 0; border-radius: 8px; background: transparent;",
    "  color: #fff; font: 400 26px/1 system-ui, sans-serif; cursor: pointer; }",
    ".close:hover { background: rgba(255,255,255,.15); }",
    "iframe { flex: 1; width: 100%; border: 0; background: #fff; }",
    // A phone: the chat takes the whole screen, with its own close button.
    "@media (max-width: 480px) {",
    "  .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; }",
    "  .panel:not([hidden]) ~ .launcher { display: none; }",
    "}",
  ].join("\n");

  var ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 ' +
    '2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';

  var host, root, panel, launcher, frame, isOpen = false, chatReady = false;

  function build() {
    host = document.createElement("strike-qa-widget");
    root = host.attachShadow({ mode: "open" });
    addStyles(root);

    panel = el("div", { class: "panel", role: "dialog", "aria-label": TITLE, id: "strikeqa-panel" });
    panel.hidden = true;
    var bar = el("div", { class: "bar" });
    var title = el("h2", { class: "title" });
    title.textContent = TITLE;
    var close = el("button", { class: "close", type: "button", "aria-label": "Close " + TITLE });
    close.textContent = "\u00d7";
    close.addEventListener("click", function () { setOpen(false); });
    bar.append(title, close);
    panel.append(bar);

    launcher = el("button", { class: "launcher", type: "button", "aria-expanded": "false",
      "aria-controls": "strikeqa-panel", "aria-label": "Open " + TITLE });
    launcher.innerHTML = ICON;  // a fixed string of ours, never page or user text
    var label = el("span", {});
    label.textContent = TITLE;
    launcher.append(label);
    launcher.addEventListener("click", function () { setOpen(!isOpen); });

    root.append(panel, launcher);
    root.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && isOpen) { e.stopPropagation(); setOpen(false); }
    });
    window.addEventListener("message", onMessage);
    document.body.appendChild(host);
  }

  function addStyles(shadow) {
    // A constructed sheet is not blocked by a host page's strict style-src CSP.
    try {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      shadow.adoptedStyleSheets = [sheet];
    } catch (e) {
      var style = document.createElement("style");
      style.textContent = CSS;
      shadow.appendChild(style);
    }
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }

  function setOpen(open) {
    if (!host) return;
    isOpen = open;
    if (open && !frame) {  // load the chat only when first wanted
      // The greeting is not in the URL: the chat takes it only by postMessage from its parent.
      var query = new URLSearchParams({ title: TITLE, color: COLOR, embed: "1" });
      frame = el("iframe", { src: BOT + "/widget?" + query.toString(), title: TITLE + " chat",
        allow: "clipboard-write" });
      panel.append(frame);
    }
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    launcher.setAttribute("aria-label", (open ? "Close " : "Open ") + TITLE);
    if (open) focusChat(); else launcher.focus();
  }

  function focusChat() {
    frame.focus();
    // Until the chat says it is ready the frame may still be blank (or refused):
    // a message now would go nowhere.
    if (chatReady) frame.contentWindow.postMessage({ type: "strikeqa:focus" }, BOT);
  }

  function onMessage(event) {
    // Only the chat we framed may talk to us.
    if (event.origin !== BOT || !frame || event.source !== frame.contentWindow || !event.data) return;
    if (event.data.type === "strikeqa:ready") {
      chatReady = true;
      frame.contentWindow.postMessage({ type: "strikeqa:greeting", text: GREETING }, BOT);
      if (isOpen) focusChat();
    } else if (event.data.type === "strikeqa:close") {
      setOpen(false);
    }
  }

  window.StrikeQA = Object.freeze({
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    toggle: function () { setOpen(!isOpen); },
  });

  if (document.body) build();
  else document.addEventListener("DOMContentLoaded", build, { once: true });
})();

/*
 * The compact chat inside the widget's iframe (/widget). It calls /api/ask/stream on
 * its own origin and shows cited answers, sentence by sentence when a model writes them. Every piece of member or document text is
 * put on the page with textContent, never as HTML.
 */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var log = document.getElementById("log");
  var form = document.getElementById("ask");
  var input = document.getElementById("question");
  var send = document.getElementById("send");
  var history = [];  // plain {role, content} turns, for follow-up questions
  var MAX_TURNS = 12;

  var color = params.get("color") || "";
  if (/^#[0-9a-fA-F]{3,8}$/.test(color)) document.documentElement.style.setProperty("--accent", color);
  if (params.get("title")) document.title = params.get("title");
  var GREETING = "Hi! Ask me about the strike. I answer only from the union's documents and show where each answer comes from.";
  var greeted = false;
  // A custom greeting comes only from the page that frames us (its data-greeting),
  // by postMessage: never from the URL, or any link could put words in the bot's
  // mouth. Only the sites listed in frame-ancestors can frame this page.
  function greet(text) {
    if (greeted) return;
    greeted = true;
    addMessage("bot", typeof text === "string" && text ? text.slice(0, 300) : GREETING);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    ask(input.value.trim());
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  // Escape inside the frame never reaches the host page: ask the widget to close.
  window.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && window.parent !== window) window.parent.postMessage({ type: "strikeqa:close" }, "*");
  });
  window.addEventListener("message", function (e) {
    if (window.parent === window || e.source !== window.parent || !e.data) return;
    if (e.data.type === "strikeqa:focus") input.focus();
    else if (e.data.type === "strikeqa:greeting") greet(e.data.text);
  });
  if (window.parent !== window) {
    window.parent.postMessage({ type: "strikeqa:ready" }, "*");
    setTimeout(greet, 1500);  // a host page that never answers still gets the default greeting
  } else {
    greet();
  }
  fetch("/api/contact").then(function (res) { return res.ok ? res.json() : {}; }).then(function (body) {
    if (!body.contact) return;
    var footer = document.getElementById("contact");
    footer.append("Questions the documents don't answer? ");
    footer.append(contactLine(body.contact));
    footer.hidden = false;
  }).catch(function () { /* no footer: the chat still works */ });

  function ask(question) {
    if (!question || send.disabled) return;
    addMessage("user", question);
    input.value = "";
    send.disabled = true;
    var pending = addMessage("bot", "…");
    pending.classList.add("pending");
    // Streamed: a generated sentence shows as soon as the server has verified it;
    // the final "answer" event then replaces them with the whole answer.
    fetch("/api/ask/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question: question, history: history.slice(-MAX_TURNS) }),
    }).then(function (res) {
      if (!res.ok) {
        return res.json().catch(function () { return {}; }).then(function (body) {
          throw new Error(body.error || "The server could not answer (" + res.status + ").");
        });
      }
      return readEvents(res, function (event) { if (event.type === "sentence") showSentence(pending, event); });
    }).then(function (answer) {
      showAnswer(pending, answer);
      history.push({ role: "user", content: question }, { role: "assistant", content: answer.answer });
    }).catch(function (err) {
      pending.textContent = err.message || "Could not reach the server. Please try again.";
      pending.classList.add("error");
    }).finally(function () {
      pending.classList.remove("pending");
      send.disabled = false;
      input.focus();
    });
  }

  // NDJSON: one event per line; resolves with the final answer.
  function readEvents(res, onEvent) {
    var reader = res.body.getReader(), decoder = new TextDecoder(), buffer = "", answer = null;
    function handle(line) {
      if (!line.trim()) return;
      var event = JSON.parse(line);
      if (event.type === "answer") answer = event.answer; else onEvent(event);
    }
    function pump() {
      return reader.read().then(function (chunk) {
        buffer += decoder.decode(chunk.value || new Uint8Array(), { stream: !chunk.done });
        var lines = buffer.split("\n");
        buffer = lines.pop();
        lines.forEach(handle);
        if (!chunk.done) return pump();
        handle(buffer);
        if (!answer) throw new Error("The answer was cut off. Please try again.");
        return answer;
      });
    }
    return pump();
  }

  function showSentence(node, event) {
    var body = node.querySelector(".text.streaming");
    if (!body) {
      node.textContent = "";
      body = el("div", "text streaming");
      node.append(body);
    } else {
      body.append(" ");
    }
    body.append(event.text);
    event.citations.forEach(function (c) {
      var mark = link(sourceUrl(c), "[" + c.n + "]");
      mark.classList.add("cite");
      mark.setAttribute("aria-label", "Source " + c.n + ": " + c.title);
      body.append(" ", mark);
    });
    node.scrollIntoView({ block: "nearest" });
  }

  function addMessage(who, text) {
    var node = el("div", "msg " + who, text);
    log.append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function showAnswer(node, answer) {
    node.textContent = "";
    if (answer.corrected && answer.corrected.length) {
      // The words read otherwise than typed, so a wrong guess is plain to see.
      node.append(el("div", "corrected", "Read " + answer.corrected.map(function (f) {
        return "“" + f.typed + "” as “" + f.word + "”";
      }).join(", ") + "."));
    }
    var body = el("div", "text");
    if (answer.kind === "crisis" || answer.kind === "medical") {
      appendBold(body, answer.answer);  // our fixed safety text: **bold** only
      if (answer.pieces && answer.pieces.length) {
        // The crisis response first, the documents' answer under it.
        var under = el("div", "under");
        appendCited(under, answer.pieces, answer.citations || []);
        body.append(under);
      }
    } else if (answer.pieces && answer.pieces.length) {
      appendCited(body, answer.pieces, answer.citations || []);
    } else {
      body.append(answer.answer);  // a refusal: plain text, nothing cited
    }
    node.append(body);
    if (answer.contact) {
      var who = el("div", "contact");
      who.append(contactLine(answer.contact));
      node.append(who);
    }
    if (answer.notice) {
      var notice = el("div", "notice");
      appendBold(notice, answer.notice);  // our fixed resources line: **bold** only
      node.append(notice);
    }
    if (answer.citations && answer.citations.length) {
      node.append(sourceList("Sources", answer.citations));
    } else if (answer.related && answer.related.length) {
      node.append(sourceList("Closest passages (they may not answer your question)", answer.related));
    }
    node.append(ratingButtons(answer));
    node.scrollIntoView({ block: "nearest" });
  }

  // The answer's (text, n) pieces in order: a quote that itself contains "[2]"
  // stays text; only a piece's own citation becomes a link.
  function appendCited(parent, pieces, citations) {
    var byN = {};
    citations.forEach(function (c) { byN[c.n] = c; });
    pieces.forEach(function (p, i) {
      if (i) parent.append(" ");
      parent.append(p.text);
      if (p.n == null) return;
      var c = byN[p.n];
      var mark = c ? link(sourceUrl(c), "[" + p.n + "]") : el("span", null, "[" + p.n + "]");
      mark.classList.add("cite");
      if (c) mark.setAttribute("aria-label", "Source " + p.n + ": " + c.title);
      parent.append(" ", mark);
    });
  }

  // "You can ask <name>: <link> · <phone> · <e-mail>", every part as text or a checked link.
  function contactLine(contact) {
    var span = el("span", null, "You can ask ");
    span.append(el("strong", null, contact.name), ": ");
    var ways = [];
    if (/^https?:\/\//i.test(contact.url || "")) ways.push(link(contact.url, contact.url));
    if (contact.phone) {
      var tel = el("a", null, contact.phone);
      tel.href = "tel:" + contact.phone.replace(/[^0-9+]/g, "");
      ways.push(tel);
    }
    if (contact.email) {
      var mail = el("a", null, contact.email);
      mail.href = "mailto:" + contact.email;
      ways.push(mail);
    }
    ways.forEach(function (w, i) { span.append(i ? " \u00b7 " : "", w); });
    return span;
  }

  function appendBold(parent, text) {
    text.split("**").forEach(function (part, i) {
      parent.append(i % 2 ? el("strong", null, part) : document.createTextNode(part));
    });
  }

  function sourceList(heading, citations) {
    var box = el("div", "sources");
    box.append(el("div", "heading", heading));
    var list = el("ol");
    citations.forEach(function (c) {
      var item = el("li");
      item.value = c.n;
      item.append(link(sourceUrl(c), c.title + (c.page ? ", page " + c.page : "")));
      var where = [c.section, shortDate(c.date)].filter(Boolean).join(" \u00b7 ");
      if (where) item.append(el("span", "where", " (" + where + ")"));
      // Some quotes open with their own quotation mark; don't double it.
      var quote = /^["\u201c\u2018']/.test(c.quote) ? c.quote : "\u201c" + c.quote + "\u201d";
      item.append(el("span", "quote", quote));
      // The same sentence in other documents: quoted once, every place listed.
      (c.also || []).forEach(function (a, i) {
        item.append(el("span", "where", i ? ", " : " Also in "));
        item.append(link(sourceUrl(a), a.title + (a.page ? ", page " + a.page : "")));
      });
      list.append(item);
    });
    box.append(list);
    return box;
  }

  function thumb(down) {
    // An SVG, not an emoji: phones and kiosks without an emoji font show boxes.
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(NS, "path");
    path.setAttribute("d", "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 " +
      "6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z");
    svg.append(path);
    if (down) svg.style.transform = "rotate(180deg)";
    return svg;
  }

  function link(href, text) {
    var a = el("a", null, text);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    return a;
  }

  // "2026-08-07" -> "Aug 7, 2026"; "2022" stays "2022". Fixed English, like the server's.
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function shortDate(iso) {
    var m = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(iso || "");
    if (!m) return "";
    if (!m[2]) return m[1];
    return MONTHS[+m[2] - 1] + (m[3] ? " " + (+m[3]) + "," : "") + " " + m[1];
  }

  function sourceUrl(c) {
    var path = String(c.doc_id).split("/").map(encodeURIComponent).join("/");
    return "/source/" + path + "?start=" + c.start + "&end=" + c.end + "#passage";
  }

  function ratingButtons(answer) {
    var row = el("div", "rate");
    [[true, "Helpful"], [false, "Not helpful"]].forEach(function (spec) {
      var b = el("button");
      b.type = "button";
      b.append(thumb(!spec[0]));
      b.setAttribute("aria-label", spec[1]);
      b.title = spec[1];
      b.setAttribute("aria-pressed", "false");
      b.addEventListener("click", function () {
        row.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
        b.setAttribute("aria-pressed", "true");
        fetch("/api/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ liked: spec[0], answer_id: answer.answer_id, question: answer.question,
            answer: answer.answer, kind: answer.kind, citations: answer.citations || [] }),
        }).then(function (res) {
          return res.json().catch(function () { return {}; }).then(function (body) {
            row.append(res.ok ? el("span", "thanks", "Thanks for the feedback.")
              : el("span", "thanks error", body.error || "Your rating could not be saved."));
          });
        });
      });
      row.append(b);
    });
    return row;
  }
})();

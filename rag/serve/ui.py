"""The chat page: a Gradio chat that streams the pipeline's cited answers.

All text from members and from the documents is escaped before Gradio's Markdown
sees it, so it shows as typed and can never become HTML. Only the fixed safety
messages, which we wrote, are rendered as Markdown.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape

import gradio as gr

from ..errors import RagError
from ..ingest.dates import display
from ..pipeline import Pipeline
from ..types import Answer, Citation, Contact, Fix, Kind, Piece, Turn, read_as
from .catalog import newest_date
from .desk import Answered, Desk, client_key
from .sources import file_url, source_url

EXAMPLES = [
    "Has a strike date been set?",
    "What is Kaiser proposing about layoffs?",
    "How many therapy appointments did Kaiser cancel during the 2022 strike?",
    "Who is Molly Parsons?",
]
INTRO = (
    "# Strike Q&A\n"
    "Ask about the strike. Every answer is quoted **only from the union's documents**, "
    "with numbered sources you can open and check.\n\n"
    "This is **not a crisis service**. If you are in crisis, **call or text 988**."
)
# System fonts only: a web font would be fetched from the internet on every page load.
THEME = gr.themes.Default(
    primary_hue="red", neutral_hue="slate",
    font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)
CSS = """
.gradio-container { max-width: 860px !important; margin: 0 auto; }
#intro h1 { margin-bottom: .25rem; }
#documents { font-size: .85rem; opacity: .85; }
/* A long pasted word must not widen a phone page ("break-word" still does). */
#chat .message-content, #chat .message-content * { overflow-wrap: anywhere !important; }
/* Gradio's 32px margins waste a phone's width. Not in @media: Gradio scopes rules
   inside media queries to its content area, where .main.app is not. */
.gradio-container .main.app { padding-left: clamp(8px, 4vw, 32px) !important;
  padding-right: clamp(8px, 4vw, 32px) !important; }
@media (max-width: 480px) {
  #intro h1 { font-size: 1.4rem; }
}
"""
STREAM_PAUSE_S = 0.04  # between sentences: enough to read as streaming, too short to wait for
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$])")


def md_escape(text: str) -> str:
    """Text that Markdown shows literally and that can never open an HTML tag."""
    return escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


def printable(text: str) -> str:
    """Text Gradio can send: a lone surrogate (from a broken paste) would end the chat's stream."""
    return text.encode("utf-8", "replace").decode("utf-8")


def cited_markdown(pieces: tuple[Piece, ...], citations: tuple[Citation, ...]) -> str:
    """Escaped answer text, each piece followed by a [n] link to the passage it quotes."""
    by_n = {c.n: c for c in citations}
    out = []
    for p in pieces:
        out.append(md_escape(p.text))
        if p.n is not None:
            c = by_n.get(p.n)
            marker = rf"\[{p.n}\]"
            out.append(f" [{marker}]({source_url(c)})" if c else f" {marker}")
    return " ".join(out)


def streamed_markdown(sentences: list) -> str:
    """Generated sentences verified so far (generation.Sentence), each with its linked [n]."""
    return " ".join(md_escape(s.text) + "".join(rf" [\[{c.n}\]]({source_url(c)})" for c in s.citations)
                    for s in sentences)


def sources_markdown(citations: tuple[Citation, ...], heading: str) -> str:
    lines = [f"\n\n**{heading}**"]
    for c in citations:
        page = f", page {c.page}" if c.page else ""
        pdf = f" · [PDF{page}]({url})" if (url := file_url(c)) else ""
        page += ", scanned page" if c.ocr else ""  # read by OCR: a word may be misread
        quote = c.quote if c.quote[:1] in "“\"‘'" else f"“{c.quote}”"  # some quotes bring their own
        where = ", ".join(p for p in (c.section, display(c.date)) if p)
        page += f" ({md_escape(where)})" if where else ""
        lines.append(f"\n\n**{c.n}.** *{md_escape(c.title)}*{page} — {md_escape(quote)} "
                     f"[Open passage]({source_url(c)}){pdf}")
        if c.also:
            lines.append(" · also in " + ", ".join(f"[{md_escape(a.title)}{f', page {a.page}' if a.page else ''}]"
                                                   f"({source_url(a)})" for a in c.also))
    return "".join(lines)


def contact_markdown(contact: Contact) -> str:
    """ "You can ask <name>: <link> · <phone> · <e-mail>"; the settings checked each part."""
    ways = []
    if contact.url:
        ways.append(f"[{md_escape(contact.url)}]({contact.url})")
    if contact.phone:
        ways.append(f"[{md_escape(contact.phone)}](tel:{''.join(c for c in contact.phone if c.isdigit() or c == '+')})")
    if contact.email:
        ways.append(f"[{md_escape(contact.email)}](mailto:{contact.email})")
    return f"You can ask **{md_escape(contact.name)}**: " + " · ".join(ways)


def answer_markdown(answer: Answer, upto: int | None = None) -> str:
    """The chat message for an answer; ``upto`` pieces only while streaming."""
    if answer.kind in (Kind.CRISIS, Kind.MEDICAL):
        if not answer.pieces:
            return answer.text  # our own fixed Markdown
        # The crisis response first, the documents' answer under it (Pipeline._crisis_first).
        return (answer.text + "\n\n---\n\n" + cited_markdown(answer.pieces, answer.citations)
                + sources_markdown(answer.citations, "Sources"))
    if answer.pieces:
        body = cited_markdown(answer.pieces[:upto], answer.citations)
        if upto is not None:
            return body
        body += sources_markdown(answer.citations, "Sources")
    else:
        body = md_escape(answer.text)
        if answer.contact:
            body += "\n\n" + contact_markdown(answer.contact)
        if answer.related and upto is None:
            body += sources_markdown(answer.related, "Closest passages (they may not answer your question)")
    if answer.corrected and upto is None:
        body = corrected_markdown(answer.corrected) + "\n\n" + body
    if answer.notice:
        body += "\n\n---\n\n" + answer.notice  # our own fixed Markdown
    return body


def corrected_markdown(fixes: tuple[Fix, ...]) -> str:
    """The words read otherwise than typed, so a wrong guess is plain to see."""
    return f"*{read_as(fixes, md_escape)}*"


def documents_markdown(pipeline: Pipeline) -> str:
    """A count and the newest date, not every title (hundreds would be a wall of text): the list
    itself is a page of its own."""
    documents = pipeline.index.documents
    newest = newest_date(documents)
    return (f"Answers come from [{len(documents)} document{'' if len(documents) == 1 else 's'}](/documents)"
            + (f", the newest dated {display(newest)}" if newest else "") + ".")


@dataclass(frozen=True)
class ChatTurn:
    """One message of the chat as the page keeps it (in a gr.State): its plain text for the
    pipeline's follow-ups, its Markdown for display, and for an answer what a vote must store."""

    role: str  # "user" | "assistant"
    # Plain text; "" for a notice, a message from the app (an error to act on), which is never
    # rated (no ``answered``) and never part of the history (no text).
    content: str
    display: str  # escaped Markdown
    answered: Answered | None = None  # set on answers only: what a like or dislike refers to


def plain_history(turns: list[ChatTurn]) -> tuple[Turn, ...]:
    """The conversation as the pipeline reads it: plain text, no notices (they have none)."""
    return tuple(Turn(t.role, t.content) for t in turns if t.content)


def _chat(turns: list[ChatTurn]) -> list[dict]:
    return [{"role": t.role, "content": t.display} for t in turns]


def build_ui(desk: Desk) -> gr.Blocks:
    """The chat page. Outputs are always (textbox, chatbot, turns); ``turns`` is the truth.

    ``turns`` (a gr.State) holds one record per chat message: its plain text for
    the pipeline's follow-up handling, its Markdown for display, and for answers
    what a like or dislike must store. The chatbot only ever shows ``turns``.
    """
    pipeline = desk.pipeline

    def respond(message: str, turns: list[ChatTurn], request: gr.Request) -> Iterator[tuple]:
        message = (message or "").strip()
        if not message:
            yield "", _chat(turns), turns
            return
        history = plain_history(turns)
        turns = [*turns, ChatTurn("user", printable(message), md_escape(printable(message)))]
        yield "", _chat(turns) + [{"role": "assistant", "content": "…"}], turns
        streamed: list = []  # generated sentences, each shown as soon as it is verified
        try:
            for event in desk.stream(message, history, client_key(request)):
                if isinstance(event, Answered):
                    answered = event
                    break
                streamed.append(event)
                yield "", _chat(turns) + [{"role": "assistant", "content": streamed_markdown(streamed)}], turns
        except RagError as exc:  # too fast, too long, no index: say so plainly, in the chat
            turns = [*turns, ChatTurn("assistant", "", md_escape(str(exc)))]
            yield "", _chat(turns), turns
            return
        answer = answered.answer
        for n in range(1, len(answer.pieces) if not streamed else 0):
            partial = {"role": "assistant", "content": answer_markdown(answer, upto=n)}
            yield "", _chat(turns) + [partial], turns
            time.sleep(STREAM_PAUSE_S)
        # A second vote on this answer replaces the first (its answer_id).
        turns = [*turns, ChatTurn("assistant", answer.text, answer_markdown(answer), answered)]
        yield "", _chat(turns), turns

    def rate(turns: list[ChatTurn], data: gr.LikeData, request: gr.Request) -> None:
        index = data.index if isinstance(data.index, int) else data.index[0]
        if data.liked not in (True, False) or not 0 <= index < len(turns):
            return  # an undone vote, or a message that is not an answer
        answered = turns[index].answered
        if answered is None:
            return
        answer = answered.answer
        try:  # the same limit as the API's; a vote over it is dropped quietly
            desk.rate(client_key(request), data.liked, answer.question, answer.text,
                      answer.to_json()["citations"], answer.kind, answered.answer_id)
        except RagError:
            pass

    def fill_example(evt: gr.SelectData) -> str:
        return evt.value["text"]

    with gr.Blocks(title="Strike Q&A", analytics_enabled=False, fill_height=True) as demo:
        gr.Markdown(INTRO, elem_id="intro")
        turns = gr.State([])
        chatbot = gr.Chatbot(
            label="Conversation", show_label=False, elem_id="chat", scale=1, min_height=320,
            examples=[{"text": q} for q in EXAMPLES], layout="bubble",
            placeholder="Ask a question about the strike, or pick one of these:",
            feedback_options=("Like", "Dislike"), buttons=["copy"],
            sanitize_html=True, allow_tags=False, latex_delimiters=[],
        )
        textbox = gr.Textbox(label="Your question", show_label=False, elem_id="question",
                             placeholder="Ask about the strike…", submit_btn="Ask", autofocus=True,
                             lines=1, max_lines=4)
        # Not a page-load event: with one, a question sent while the load
        # event's stream is closing can be lost by Gradio's client (seen in our
        # browser tests). Refreshed after each answer instead, which also shows
        # a new index build picked up without a restart.
        documents = gr.Markdown(documents_markdown(pipeline), elem_id="documents")
        flow = dict(fn=respond, inputs=[textbox, turns], outputs=[textbox, chatbot, turns],
                    show_progress="hidden")
        refresh = dict(fn=lambda: documents_markdown(pipeline), outputs=documents, show_progress="hidden")
        textbox.submit(**flow).then(**refresh)
        chatbot.example_select(fill_example, None, textbox).then(**flow).then(**refresh)
        chatbot.like(rate, [turns], None)
        chatbot.clear(lambda: [], None, turns)
    # The pipeline is thread-safe; Gradio's default of one run at a time would queue everyone.
    demo.queue(default_concurrency_limit=8)
    return demo

import pytest

from rag.errors import UnreadableDocumentError
from rag.ingest.loaders import Loaded, Skipped, load_file, walk_corpus
from tests.pdfs import encrypted_pdf, imageonly_pdf, text_pdf, truncated_pdf


def test_pdf_keeps_pages_and_metadata_title(tmp_path):
    pdf = text_pdf(tmp_path / "contract.pdf", ["Article 1 wages.", "Article 2 layoffs need notice."], title="2024 Contract")
    doc = load_file(pdf, "contract.pdf").document
    assert doc.title == "2024 Contract"
    assert [p.number for p in doc.pages] == [1, 2]
    second = doc.pages[1]
    assert doc.text[second.start:second.end] == "Article 2 layoffs need notice."
    assert doc.page_at(doc.text.index("layoffs")) == 2


@pytest.mark.parametrize("make, reason", [
    (encrypted_pdf, "encrypted"),
    (imageonly_pdf, "no extractable text"),
    (truncated_pdf, "corrupt"),
])
def test_broken_pdfs_raise_clear_reasons(tmp_path, make, reason):
    pdf = make(tmp_path / "bad.pdf")
    with pytest.raises(UnreadableDocumentError, match=reason):
        load_file(pdf, "bad.pdf")


def test_html_keeps_visible_text_only(tmp_path):
    page = tmp_path / "news.html"
    page.write_text("<html><head><title>Strike news</title><style>p{color:red}</style></head>"
                    "<body><h1>Vote</h1><script>alert(1)</script><p>The vote ends in February.</p></body></html>")
    doc = load_file(page, "news.html").document
    assert doc.title == "Strike news"
    assert "The vote ends in February." in doc.text
    assert "alert" not in doc.text and "color" not in doc.text


def test_non_utf8_text_falls_back_and_says_so(tmp_path):
    f = tmp_path / "old.txt"
    f.write_bytes("Caf\u00e9 workers \u2013 strike".encode("cp1252"))
    loaded = load_file(f, "old.txt")
    assert loaded.document.text == "Caf\u00e9 workers \u2013 strike"
    assert "Windows-1252" in loaded.note


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"  \n", "empty"), (b"\x89PNG\r\n\x00\x00IHDR", "binary")])
def test_empty_and_binary_text_files_are_refused(tmp_path, content, reason):
    f = tmp_path / "x.txt"
    f.write_bytes(content)
    with pytest.raises(UnreadableDocumentError, match=reason):
        load_file(f, "x.txt")


def test_a_file_linked_to_itself_is_one_warning_and_the_rest_is_loaded(tmp_path):
    (tmp_path / "good.txt").write_text("Pickets start at 7.")
    (tmp_path / "self.txt").symlink_to("self.txt")  # ln -s self.txt self.txt
    (tmp_path / "a.txt").symlink_to("b.txt")
    (tmp_path / "b.txt").symlink_to("a.txt")
    results = list(walk_corpus(tmp_path))
    assert [r.document.doc_id for r in results if isinstance(r, Loaded)] == ["good.txt"]
    skipped = {r.path: r.reason for r in results if isinstance(r, Skipped)}
    assert set(skipped) == {"self.txt", "a.txt", "b.txt"}
    assert all("symlink loop" in reason for reason in skipped.values())


def test_walk_reports_every_bad_file_and_loads_the_rest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.md").write_text("# Strike FAQ\nPickets start at 7.")
    (tmp_path / "sub" / "good.txt").write_text("Second good file.")
    encrypted_pdf(tmp_path / "locked.pdf")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "loop").symlink_to(tmp_path)
    results = list(walk_corpus(tmp_path))
    loaded = sorted(r.document.doc_id for r in results if isinstance(r, Loaded))
    skipped = {r.path: r.reason for r in results if isinstance(r, Skipped)}
    assert loaded == ["good.md", "sub/good.txt"]
    assert "encrypted" in skipped["locked.pdf"]
    assert "unsupported" in skipped["image.png"]
    assert any("symlink loop" in reason for reason in skipped.values())
    assert next(r for r in results if isinstance(r, Loaded) and r.document.doc_id == "good.md").document.title == "Strike FAQ"


def test_a_pdf_secured_with_an_empty_password_opens(tmp_path):
    """Many unions' PDFs are "secured" (AES) with no password to open them: pypdf reads them with
    its crypto extra. One that needs a real password stays one clear warning."""
    doc = load_file(encrypted_pdf(tmp_path / "manual.pdf", password="", algorithm="AES-256"), "manual.pdf").document
    assert "Confidential bargaining notes." in doc.text
    with pytest.raises(UnreadableDocumentError, match="encrypted PDF"):
        load_file(encrypted_pdf(tmp_path / "locked.pdf", password="secret", algorithm="AES-256"), "locked.pdf")


def test_mdx_pages_read_as_markdown_with_their_components_dropped(tmp_path):
    page = tmp_path / "2023-12-26_tentative-agreement.mdx"
    page.write_text('---\ntitle: "We Won Our Tentative Agreement"\ndate: 2023-12-26\n---\n'
                    'import Callout from "../components/Callout"\n\n'
                    '<Callout type="info">Ratification voting opens January 4.</Callout>\n\n'
                    '## Wages\n\nWages rise to $17 per hour. <Badge label="new" />\n')
    doc = load_file(page, page.name).document
    assert doc.title == "We Won Our Tentative Agreement" and doc.date == "2023-12-26"
    assert "Ratification voting opens January 4." in doc.text and "Wages rise to $17 per hour." in doc.text
    assert "<" not in doc.text and "import Callout" not in doc.text
    assert [r.document.doc_id for r in walk_corpus(tmp_path) if isinstance(r, Loaded)] == [page.name]


def test_a_hugo_page_takes_its_title_from_its_front_matter(tmp_path):
    page = tmp_path / "notice.md"
    page.write_text('+++\ntitle = "Five days\' strike notice served"\ndate = 2022-11-17\n+++\n\nWe served notice today.\n')
    assert load_file(page, page.name).document.title == "Five days' strike notice served"


def test_a_time_tag_gives_the_date_its_reader_sees(tmp_path):
    """local083.org's news page of 2025-11-03 marks "Last updated: November 3, 2025" up as
    <time datetime="2025-10-27">: the page, its JSON-LD and its URL all say November 3."""
    page = tmp_path / "update.html"
    page.write_text('<html><body><main><h1>Survey update</h1><p>Last updated: <time datetime="2025-10-27">'
                    "November 3, 2025</time></p><p>Results are in.</p></main></body></html>")
    doc = load_file(page, "update.html").document
    assert (doc.date, doc.date_source) == ("2025-11-03", "<time> tag")
    page.write_text('<html><body><p>Posted <time datetime="2026-02-11T09:00">Wednesday</time></p></body></html>')
    assert load_file(page, "update.html").document.date == "2026-02-11"  # text with no date: the attribute

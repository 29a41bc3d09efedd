"""The report as PDF: WeasyPrint renders the very HTML people open, with the print styles of
`report.css` (A4, page numbers, one section per page)."""
from __future__ import annotations


def render_pdf(html: str) -> bytes:
    """PDF bytes of `html` (its charts are data: URIs, so no base URL is needed)."""
    # Informational: WeasyPrint logs every unsupported CSS property at WARNING.
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return HTML(string=html).write_pdf()

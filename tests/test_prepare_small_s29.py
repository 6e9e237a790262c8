"""Small hostile-log cases of probe s29 (docs/data.md): a line of only spaces, blank lines at the end of a file,
advice to skip rows where skipping would drop them all, and a gzip compressed twice."""

import gzip

import pytest

from a2gen_hf.data import LogFormatError, convert_log

GOOD = "1,100,5,pv,1511544070\n"
ROWS = "".join(f"{user},{100 + k},5,pv,{1511544070 + 3600 * k + 7 * user}\n" for user in range(1, 4) for k in range(4))


def convert(path, **kwargs):
    return convert_log(path, "taobao", num_proc=1, progress=False, **kwargs)


def write(tmp_path, text: str, name: str = "log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# -- 1. a line of only spaces or tabs


@pytest.mark.parametrize("blank", ["   ", "\t", " \t ", "\u00a0"])
def test_a_line_of_only_spaces_is_an_empty_line(tmp_path, blank):
    """Before: reported as ``truncated_row`` ("1 of 5 columns"), where an empty line is ``empty_line``."""
    path = write(tmp_path, GOOD + blank + "\n" + ROWS)
    with pytest.raises(LogFormatError, match=r"log\.csv:2: the line is empty") as error:
        convert(path)
    assert "truncated" not in str(error.value)
    result = convert(path, on_bad_rows="skip")
    assert result.summary["rows_dropped"] == {"empty_line": 1}
    assert result.summary["rows_read"] == 14


# -- 2. blank lines at the end of a file


@pytest.mark.parametrize("end", ["\n", "\n\n\n", "  \n\t\n", " ", "\r\n"])
@pytest.mark.parametrize("compressed", [False, True])
def test_blank_lines_that_end_the_file_are_no_rows(tmp_path, end, compressed):
    """Before: ``log.csv:13: the line is empty`` stopped the default mode (on_bad_rows='error')."""
    text = ROWS + end
    if compressed:
        path = tmp_path / "log.csv.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = write(tmp_path, text)
    result = convert(path)
    assert result.summary["rows_read"] == 12 and result.summary["rows_dropped"] == {}


def test_a_blank_line_between_rows_stays_a_bad_row(tmp_path):
    path = write(tmp_path, ROWS + "\n" + ROWS.replace(",pv,", ",buy,") + "\n\n")
    with pytest.raises(LogFormatError, match=r"log\.csv:13: the line is empty"):
        convert(path)
    result = convert(path, on_bad_rows="skip")
    assert result.summary["rows_read"] == 25 and result.summary["rows_dropped"] == {"empty_line": 1}


def test_a_file_of_blank_lines_only_says_so(tmp_path):
    with pytest.raises(LogFormatError, match=r"log\.csv: the file has no rows, only 3 blank line\(s\)"):
        convert(write(tmp_path, "\n \n\n"), on_bad_rows="skip")


# -- 4. a gzip compressed twice


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_a_gzip_compressed_twice_is_named_so(tmp_path, mode):
    """Before: "the file holds NUL bytes ...: it is binary data, not a text log"."""
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(gzip.compress(ROWS.encode())))
    with pytest.raises(LogFormatError) as error:
        convert(path, on_bad_rows=mode)
    message = str(error.value)
    assert message.startswith("log.csv.gz: the file is compressed twice: once decompressed, it is still gzip data")
    assert "`zcat log.csv.gz | zcat > log.csv`" in message and "binary" not in message


# -- 3. no advice to skip rows where skipping would drop every row


def test_every_value_quoted_is_not_advised_to_be_skipped(tmp_path):
    """Before: unknown action '"pv"' ... "or pass on_bad_rows='skip'", which would drop every row."""
    quoted = "".join(",".join(f'"{field}"' for field in line.split(",")) + "\n" for line in ROWS.splitlines())
    with pytest.raises(LogFormatError) as error:
        convert(write(tmp_path, quoted))
    message = str(error.value)
    assert "--quote-char" in message and "all 12 rows read so far are bad rows" in message
    assert "--on-bad-rows skip" not in message


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz"])
def test_a_delimiter_at_every_line_end_is_named_and_not_advised_to_be_skipped(tmp_path, name):
    """Before: "6 columns where 5 are expected ... or pass on_bad_rows='skip'", which would drop every row."""
    text = ROWS.replace("\n", ",\n")
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    with pytest.raises(LogFormatError) as error:
        convert(path)
    message = str(error.value)
    assert "the line ends with the delimiter ','" in message and "all 12 rows read so far are bad rows" in message
    assert "--on-bad-rows skip" not in message
    assert ("zcat log.csv.gz | sed" if name.endswith(".gz") else "sed -E 's/,(\\r?)$/\\1/' log.csv >") in message


def test_one_bad_row_among_good_ones_is_still_advised_to_be_skipped(tmp_path):
    lines = ROWS.splitlines(keepends=True)
    for bad in ("1,101,5,look,1511544071\n", "1,101,5,pv,1511544071,\n"):
        with pytest.raises(LogFormatError, match=r"--on-bad-rows skip\) to drop and count such rows"):
            convert(write(tmp_path, "".join(lines[:5]) + bad + "".join(lines[5:])))

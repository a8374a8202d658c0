"""The console's words in Vietnamese, the staff's language, and in English for whoever asks for
it (`?lang=en`, kept in a cookie). Templates and messages are written in Vietnamese and passed
through `_`, which looks the English up here; `tests/console/test_i18n.py` fails on a Vietnamese
text in a template that this catalog lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = ("vi", "en")
Translate = Callable[..., str]

EN: dict[str, str] = {
    # base, sign-in, errors
    "Trung tâm điều hành": "Operations centre",
    "Trung tâm điều hành · IOC": "Operations centre · IOC",
    "Đăng xuất": "Sign out",
    "Đăng nhập": "Sign in",
    "Tên đăng nhập": "Username",
    "Mật khẩu": "Password",
    "Sai tên đăng nhập hoặc mật khẩu.": "Wrong username or password.",
    "Không thực hiện được": "Not done",
    "← Danh sách sự cố": "← Incidents",
    "Biểu mẫu quá lớn (tối đa {limit} byte).": "Form too large (at most {limit} bytes).",
    "Biểu mẫu không đúng mã UTF-8.": "The form is not UTF-8.",
    "Biểu mẫu không thuộc phiên làm việc này. Hãy tải lại trang.": (
        "This form is not from your session. Reload the page."
    ),
    "Không có sự cố {id}.": "No incident {id}.",
    "Không có thao tác {action}.": "No action {action}.",
    "Hãy chọn một đơn vị trong danh sách.": "Choose a unit from the list.",
    "Không giao được: {why}": "Could not assign: {why}",
    "Không thực hiện được: {why}": "Could not do it: {why}",
    "Không nhận được: {why}": "Could not acknowledge: {why}",
    "Liên kết này đã được dùng. Hãy mở sự cố trong bảng điều hành.": (
        "This link was used already. Open the incident in the console."
    ),
    "Máy chủ này không dùng liên kết trong cảnh báo.": "This server sends no links in alerts.",
    "Liên kết không hợp lệ.": "Invalid link.",
    "Liên kết đã hết hạn. Hãy mở sự cố trong bảng điều hành.": (
        "The link has expired. Open the incident in the console."
    ),
    # queue
    "Sự cố đang mở": "Open incidents",
    "Loại": "Kind",
    "Khu vực": "Area",
    "Đơn vị": "Unit",
    "Tất cả": "All",
    "Lọc": "Filter",
    "Mức độ": "Severity",
    "Sự cố": "Incident",
    "Trạng thái": "Status",
    "Bắt đầu": "Started",
    "Nguồn": "Sources",
    "nguồn": "source(s)",
    "phản ánh": "report(s)",
    "hạn": "due",
    "Không có sự cố nào đang mở.": "No open incidents.",
    "Bản đồ": "Map",
    # severities and states
    "Khẩn cấp": "Urgent",
    "Cao": "High",
    "Thường": "Normal",
    "Mới": "New",
    "Đã nhận": "Acknowledged",
    "Đã xử lý": "Resolved",
    "Đã gộp": "Merged",
    "Đang xử lý": "In progress",
    "đã xử lý": "handled",
    "báo nhầm": "false alarm",
    "tự hết": "cleared by itself",
    # incident page
    "phản ánh 1022": "1022 report(s)",
    "Đơn vị xử lý": "Assigned unit",
    "Chưa giao đơn vị.": "No unit assigned.",
    "Nhận": "Acknowledge",
    "Báo nhầm": "False alarm",
    "Mở lại": "Reopen",
    "Ghi chú": "Note",
    "Giao đơn vị": "Assign unit",
    "đề xuất": "suggested",
    "Hình ảnh": "Images",
    "Ảnh camera": "Camera image",
    "Đoạn phim": "Clip",
    "đoạn phim": "clip",
    "Phản ánh 1022": "1022 reports",
    "Mã": "Id",
    "Lúc": "At",
    "Nội dung (đã che thông tin liên lạc)": "Text (contact data masked)",
    "Đã báo người phản ánh": "Reporter told",
    "Người phản ánh": "Reporter",
    "đã tiếp nhận": "received",
    "đã giao": "assigned",
    "lỗi, sẽ thử lại": "failed, will retry",
    "không gửi được": "could not be sent",
    "Báo động trực": "On-call pages",
    "Thông báo đã gửi": "Alerts sent",
    "Thông báo": "Notification",
    "Bước": "Step",
    "Vai trò": "Role",
    "Người nhận": "Recipient",
    "Kênh": "Channel",
    "Kết quả": "Outcome",
    "đã gửi": "sent",
    "lỗi": "failed",
    "Thiết bị / phản ánh": "Device / report",
    "Nội dung": "Content",
    "Lịch sử": "History",
    "Thay đổi": "Change",
    "Người thực hiện": "By",
    "Diễn biến cảm biến": "Sensor readings",
    # ticket page
    "Phản ánh": "Report",
    "← Sự cố": "← Incident",
    "Không có phản ánh {id}.": "No report {id}.",
    "Không sửa được: {why}": "Not corrected: {why}",
    "Phân loại": "Triage",
    "Lĩnh vực": "Category",
    "có": "yes",
    "không": "no",
    "độ tin cậy": "confidence",
    "Mức ưu tiên": "Priority",
    "Độ tin cậy lĩnh vực": "Category confidence",
    "Mô hình": "Model",
    "quy tắc": "rules",
    "Căn cứ": "Evidence",
    "đọc lại bằng mô hình hiện tại": "read again by the model now loaded",
    "Sửa phân loại": "Correct triage",
    "giữ nguyên": "keep",
    "Lý do (bắt buộc)": "Reason (required)",
    "Các lần sửa": "Corrections",
    "Lý do": "Reason",
    # link page
    "Đã nhận sự cố": "Incident acknowledged",
    "Mở trang sự cố": "Open the incident page",
    "cần đăng nhập": "sign-in needed",
}


def translator(language: Language) -> Translate:
    """`_(text, **values)`: the text in `language`, its `{placeholders}` filled."""
    catalog = EN if language == "en" else {}

    def translate(text: str, **values: object) -> str:
        found = catalog.get(text, text)
        return found.format(**values) if values else found

    return translate

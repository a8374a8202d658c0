"""The ten report categories of the hotline; they are also the Open311 service codes."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    CHAY_NO = "chay_no"
    GIAO_THONG = "giao_thong"
    NGAP_LUT_THIEN_TAI = "ngap_lut_thien_tai"
    MOI_TRUONG = "moi_truong"
    TRAT_TU_DO_THI = "trat_tu_do_thi"
    AN_NINH_TRAT_TU = "an_ninh_trat_tu"
    DIEN_NUOC_CHIEU_SANG = "dien_nuoc_chieu_sang"
    Y_TE_VE_SINH_THUC_PHAM = "y_te_ve_sinh_thuc_pham"
    DICH_VU_CONG = "dich_vu_cong"
    KHAC = "khac"


# Names shown to staff and in Open311 services.json (service_name) with a short description.
# The descriptions are the definitions the corpus is labelled by and blind sets are labelled with.
# People in danger outside fire, traffic, floods and health (missing, drowning, about to jump,
# fallen into a pit) and loose dangerous animals go to An ninh trật tự: the ward or commune police
# are who the hotline dispatches to them first.
CATEGORY_NAMES: dict[Category, tuple[str, str]] = {
    Category.CHAY_NO: ("Cháy, nổ", "Fire, explosion, gas leak"),
    Category.GIAO_THONG: ("Giao thông", "Traffic, accidents, road damage, signals"),
    Category.NGAP_LUT_THIEN_TAI: (
        "Ngập lụt, thiên tai",
        "Floods, storms, fallen trees, landslides",
    ),
    Category.MOI_TRUONG: ("Môi trường", "Waste, pollution, smells, discharges"),
    Category.TRAT_TU_DO_THI: ("Trật tự đô thị", "Sidewalk encroachment, illegal building, ads"),
    Category.AN_NINH_TRAT_TU: (
        "An ninh trật tự",
        "Fights, theft, fraud, disturbances, late-night noise, missing people, people in danger"
        " (drowning, threatening to jump, fallen into a pit), loose dangerous animals",
    ),
    Category.DIEN_NUOC_CHIEU_SANG: ("Điện, nước, chiếu sáng", "Power, water, street lighting"),
    Category.Y_TE_VE_SINH_THUC_PHAM: ("Y tế, vệ sinh thực phẩm", "Health, food safety"),
    Category.DICH_VU_CONG: ("Dịch vụ công", "Public services, procedures, the portal and app"),
    Category.KHAC: ("Khác", "Anything else"),
}

// Draws each element marked data-map="<id of a JSON script>" as a Leaflet map of its points:
// {"tiles": url or null, "attribution": text, "points": [{lat, lon, label, colour}]}.
// Without a tile URL the markers stand on the element's plain background (no internet needed).
(function () {
  "use strict";
  function draw(element) {
    var data = JSON.parse(document.getElementById(element.dataset.map).textContent);
    var map = L.map(element, { attributionControl: Boolean(data.tiles) });
    if (data.tiles) {
      L.tileLayer(data.tiles, { attribution: data.attribution || "", maxZoom: 19 }).addTo(map);
    }
    var corners = [];
    data.points.forEach(function (point) {
      var label = document.createElement("span");
      label.textContent = point.label; // text, never markup: titles come from citizens too
      L.circleMarker([point.lat, point.lon], {
        radius: 8, color: point.colour, fillColor: point.colour, fillOpacity: 0.7, weight: 2
      }).bindTooltip(label).addTo(map);
      corners.push([point.lat, point.lon]);
    });
    if (corners.length) {
      map.fitBounds(corners, { maxZoom: 16, padding: [24, 24] });
    } else {
      map.setView([21.59, 105.84], 11); // Thái Nguyên
    }
    element.dataset.markers = String(corners.length);
  }
  document.querySelectorAll("[data-map]").forEach(draw);
})();

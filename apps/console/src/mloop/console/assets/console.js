// Refreshes the part of a page marked data-live (every data-live seconds) while it says so, unless
// the person is typing in a form of that part or the tab is hidden.
(function(){
  var live = document.querySelector('[data-live]');
  if (!live) return;
  var every = 1000 * (parseFloat(live.getAttribute('data-live')) || 3);
  function tick(){
    var el = document.querySelector('[data-live]');
    if (!el) return;
    if (document.hidden || (el.contains(document.activeElement) && document.activeElement.tagName !== 'BODY' &&
        document.activeElement.tagName !== 'BUTTON')) { setTimeout(tick, every); return; }
    fetch(location.href, {credentials: 'same-origin', headers: {'X-Console-Refresh': '1'}})
      .then(function(r){ return r.ok ? r.text() : null; })
      .then(function(html){
        if (html) {
          var doc = new DOMParser().parseFromString(html, 'text/html');
          var fresh = doc.getElementById('live');
          if (fresh) { el.replaceWith(fresh); }
          if (!fresh || !fresh.hasAttribute('data-live')) return;
        }
        setTimeout(tick, every);
      })
      .catch(function(){ setTimeout(tick, every * 2); });
  }
  setTimeout(tick, every);
})();
